/* SPDX-License-Identifier: Apache-2.0 */
/* Mounting as root with mount(2): the kernel takes the /dev/fuse fd in the
 * options, so no fusermount helper is needed. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
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
	if (mount(fsname, mountpoint, type, MS_RDONLY | MS_NOSUID | MS_NODEV, opts) < 0)
		return rs_err(err, -errno, "mount %s at %s: %s", type, mountpoint, strerror(errno));
	return rs_steal_fd(&fd);
}

int rfuse_unmount(const char *mountpoint, struct rs_error *err)
{
	if (umount2(mountpoint, MNT_DETACH) < 0)
		return rs_err(err, -errno, "unmount %s: %s", mountpoint, strerror(errno));
	return 0;
}
