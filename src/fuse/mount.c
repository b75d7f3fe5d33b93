/* SPDX-License-Identifier: Apache-2.0 */
/* Mounting as root with mount(2): the kernel takes the /dev/fuse fd in the
 * options, so no fusermount helper is needed. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "rfuse.h"

/* Names go into a comma-separated option string: a comma or an unprintable
 * byte would change what the kernel parses. */
static bool safe_name(const char *s)
{
	if (!s || !*s)
		return false;
	for (; *s; s++)
		if (*s == ',' || *s == '=' || (unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

int rfuse_mount(const char *mountpoint, const char *fsname, const char *subtype,
		struct rs_error *err)
{
	return rfuse_mount_with(mountpoint, fsname, subtype, 0, err);
}

int rfuse_mount_with(const char *mountpoint, const char *fsname, const char *subtype,
		     unsigned flags, struct rs_error *err)
{
	if (!safe_name(fsname) || !safe_name(subtype))
		return rs_err(err, -EINVAL, "fuse mount %s: fsname and subtype must be plain words",
			      mountpoint);
	struct stat st;
	if (stat(mountpoint, &st) < 0)
		return rs_err(err, -errno, "mountpoint %s: %s", mountpoint, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return rs_err(err, -ENOTDIR, "mountpoint %s is not a directory", mountpoint);
	cleanup_fd int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return rs_err(err, -errno, "open /dev/fuse: %s", strerror(errno));
	char opts[256], type[128];
	int n = snprintf(
	    opts, sizeof(opts),
	    "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions", fd);
	int m = snprintf(type, sizeof(type), "fuse.%s", subtype);
	if (n < 0 || (size_t)n >= sizeof(opts) || m < 0 || (size_t)m >= sizeof(type))
		return rs_err(err, -ENAMETOOLONG, "fuse mount %s: options too long", mountpoint);
	unsigned long mflags = MS_NOSUID | MS_NODEV;
	if (!(flags & RFUSE_MOUNT_WRITABLE))
		mflags |= MS_RDONLY;
	if (mount(fsname, mountpoint, type, mflags, opts) < 0)
		return rs_err(err, -errno, "mount %s at %s: %s", type, mountpoint, strerror(errno));
	return rs_steal_fd(&fd);
}

int rfuse_unmount(const char *mountpoint, struct rs_error *err)
{
	if (umount2(mountpoint, MNT_DETACH) < 0)
		return rs_err(err, -errno, "unmount %s: %s", mountpoint, strerror(errno));
	return 0;
}

/* A mountinfo field with its octal escapes (\040 for a space...) undone. */
static void unescape(char *s)
{
	char *o = s;
	for (char *p = s; *p; p++) {
		if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
		    p[3] >= '0' && p[3] <= '7') {
			*o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
			p += 3;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
}

int rfuse_mounted_at(const char *mountpoint)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	char *line = NULL;
	size_t cap = 0;
	int found = 0;
	while (!found && getline(&line, &cap, f) > 0) {
		char *save = NULL, *mp = NULL;
		char *tok = strtok_r(line, " ", &save);
		for (int i = 0; tok && i < 4; i++)
			tok = strtok_r(NULL, " ", &save);
		if (!tok)
			continue;
		mp = tok;
		/* Optional fields end at "-", then the filesystem type. */
		while ((tok = strtok_r(NULL, " ", &save)) && strcmp(tok, "-") != 0)
			;
		char *type = tok ? strtok_r(NULL, " ", &save) : NULL;
		unescape(mp);
		if (type && strcmp(mp, mountpoint) == 0)
			found = strncmp(type, "fuse", 4) == 0 ? 1 : 0;
	}
	free(line);
	fclose(f);
	return found;
}
