// SPDX-License-Identifier: Apache-2.0
/* The recording's own filesystem: an ext4 image on a loop device whose
 * readahead is ESGZ_PARTIAL_READAHEAD_KB. Which pages of a file the workload
 * touched is read off the page cache afterwards, and the kernel's readahead
 * decides how much each fault brings in: the host disk's (often megabytes)
 * would make every file look read whole, while a lazy mount of the optimised
 * image reads around a fault with exactly this window. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "record_internal.h"

extern char **environ;

/* mkfs.ext4 quietly, its output to /dev/null: 0, or why it failed. */
static int run_mkfs(const char *image, struct rs_error *err)
{
	/* One inode per 4 KiB: images of many small files fit too. No journal:
	 * nothing here must survive a crash. */
	char *argv[] = {"mkfs.ext4", "-q", "-F", "-O",        "^has_journal", "-i", "4096",
			"-m",        "0",  "-E", "nodiscard", (char *)image,  NULL};
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
	pid_t pid;
	int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0)
		return rs_err(err, -rc, "mkfs.ext4: %s", strerror(rc));
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return rs_err(err, -errno, "mkfs.ext4: %s", strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return rs_err(err, -EIO, "mkfs.ext4 %s failed (status %d)", image, status);
	return 0;
}

/* A free loop device bound to the image (detached by the kernel once the
 * last user is gone), its readahead set; the loop fd, or a negative code. */
static int attach_loop(const char *image, char *dev, size_t dev_len, struct rs_error *err)
{
	cleanup_fd int img = open(image, O_RDWR | O_CLOEXEC);
	if (img < 0)
		return rs_err(err, -errno, "%s: %s", image, strerror(errno));
	cleanup_fd int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return rs_err(err, -errno, "/dev/loop-control: %s", strerror(errno));
	/* Another process may take the device between the two calls: retry. */
	for (int attempt = 0; attempt < 8; attempt++) {
		int nr = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (nr < 0)
			return rs_err(err, -errno, "no free loop device: %s", strerror(errno));
		snprintf(dev, dev_len, "/dev/loop%d", nr);
		int fd = open(dev, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			return rs_err(err, -errno, "%s: %s", dev, strerror(errno));
		struct loop_config cfg = {.fd = (uint32_t)img,
					  .info = {.lo_flags = LO_FLAGS_AUTOCLEAR}};
		if (ioctl(fd, LOOP_CONFIGURE, &cfg) == 0) {
			/* BLKRASET counts 512-byte sectors. */
			if (ioctl(fd, BLKRASET, (unsigned long)ESGZ_PARTIAL_READAHEAD_KB * 2) < 0) {
				int e = errno;
				close(fd);
				return rs_err(err, -e, "%s: setting readahead: %s", dev,
					      strerror(e));
			}
			return fd;
		}
		int e = errno;
		close(fd);
		if (e != EBUSY)
			return rs_err(err, -e, "%s: %s", dev, strerror(e));
	}
	return rs_err(err, -EBUSY, "no loop device stayed free");
}

int conv_rec_loopfs_mount(const char *dir, int64_t size, char **mountpoint, struct rs_error *err)
{
	cleanup_free char *image = NULL;
	cleanup_free char *mnt = NULL;
	if (asprintf(&image, "%s/fs.img", dir) < 0 || asprintf(&mnt, "%s/fs", dir) < 0) {
		image = mnt = NULL;
		return rs_err(err, -ENOMEM, "out of memory");
	}
	cleanup_fd int img = open(image, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (img < 0)
		return rs_err(err, -errno, "%s: %s", image, strerror(errno));
	/* Sparse: only what is unpacked takes room. */
	if (ftruncate(img, size) < 0)
		return rs_err(err, -errno, "%s: %s", image, strerror(errno));
	int rc = run_mkfs(image, err);
	if (rc < 0)
		return rc;
	char dev[64];
	cleanup_fd int loop = attach_loop(image, dev, sizeof(dev), err);
	if (loop < 0)
		return loop;
	if (mkdir(mnt, 0755) < 0)
		return rs_err(err, -errno, "%s: %s", mnt, strerror(errno));
	/* noinit_itable: no background zeroing of the inode tables (a GiB of
	 * writes for a big image); mkfs left them marked uninitialised. */
	if (mount(dev, mnt, "ext4", MS_NOATIME, "noinit_itable") < 0)
		return rs_err(err, -errno, "mount %s on %s: %s", dev, mnt, strerror(errno));
	*mountpoint = mnt;
	mnt = NULL;
	return 0;
}

void conv_rec_loopfs_unmount(const char *mountpoint)
{
	if (umount2(mountpoint, 0) < 0 && umount2(mountpoint, MNT_DETACH) < 0)
		rs_log(RS_LOG_WARN, "cannot unmount %s: %s", mountpoint, strerror(errno));
}
