// SPDX-License-Identifier: Apache-2.0
/* The image config's User as uid, gid, additional gids and home, from the
 * rootfs's own /etc/passwd and /etc/group (as runc's libcontainer/user does).
 * The files are opened with openat2(RESOLVE_IN_ROOT): a symlink in the image
 * cannot point us at the host's. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "record_internal.h"

#define ID_FILE_MAX (4u << 20)

/* Reads rootfs/rel into out (NUL-terminated); a missing file is empty. */
static int read_in_root(const char *rootfs, const char *rel, struct rs_buf *out,
			struct rs_error *err)
{
	cleanup_fd int root = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		return rs_err(err, -errno, "%s: %s", rootfs, strerror(errno));
	cleanup_fd int fd = conv_rec_open_in_root(root, rel);
	if (fd < 0 && (errno == ENOENT || errno == ENOTDIR))
		return rs_buf_append(out, "", 1) < 0 ? rs_err(err, -ENOMEM, "out of memory") : 0;
	if (fd < 0)
		return rs_err(err, -errno, "the image's /%s: %s", rel, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) < 0)
		return rs_err(err, -errno, "the image's /%s: %s", rel, strerror(errno));
	if (!S_ISREG(st.st_mode) || st.st_size > (off_t)ID_FILE_MAX)
		return rs_err(err, -EINVAL, "the image's /%s: not a regular file of at most %u MiB",
			      rel, ID_FILE_MAX >> 20);
	int rc = conv_fd_read_all(fd, ID_FILE_MAX, out, err);
	if (rc == 0 && rs_buf_append(out, "", 1) < 0)
		rc = rs_err(err, -ENOMEM, "out of memory");
	return rc;
}

/* A decimal id (not the reserved (uint32_t)-1). */
static bool parse_id(const char *s, uint32_t *out)
{
	if (!*s || strlen(s) > 10)
		return false;
	uint64_t v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (v >= UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* Splits a colon-separated line in place into at most max fields. */
static size_t fields(char *line, char **f, size_t max)
{
	size_t n = 0;
	f[n++] = line;
	for (char *p = line; *p && n < max; p++)
		if (*p == ':') {
			*p = 0;
			f[n++] = p + 1;
		}
	return n;
}

/* Calls fn on each line of a passwd/group text with its fields; stops when fn
 * returns true. */
static void each_line(char *text, size_t want, bool (*fn)(char **f, void *ctx), void *ctx)
{
	for (char *line = text; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = 0;
		char *f[8];
		bool stop = false;
		if (line[0] != '#' && line[0] != '+' && line[0] != '-' &&
		    fields(line, f, want) == want)
			stop = fn(f, ctx);
		if (nl)
			*nl = '\n';
		line = nl ? nl + 1 : NULL;
		if (stop)
			break;
	}
}

struct pw_find {
	const char *arg; /* name or uid */
	bool numeric;
	uint32_t id;
	bool found;
	char name[256], home[4096];
	uint32_t uid, gid;
};

static bool pw_match(char **f, void *ctx)
{
	struct pw_find *q = ctx;
	uint32_t uid, gid;
	if (!parse_id(f[2], &uid) || !parse_id(f[3], &gid))
		return false;
	if (q->numeric ? uid != q->id : strcmp(f[0], q->arg) != 0)
		return false;
	q->found = true;
	q->uid = uid;
	q->gid = gid;
	snprintf(q->name, sizeof(q->name), "%s", f[0]);
	snprintf(q->home, sizeof(q->home), "%s", *f[5] ? f[5] : "/");
	return true;
}

struct gr_find {
	const char *arg;    /* a group name or gid to find, or NULL */
	const char *member; /* collect groups listing this user, or NULL */
	uint32_t gid;
	bool found;
	uint32_t *gids;
	size_t n_gids;
	bool oom;
};

static bool has_member(const char *list, const char *user)
{
	size_t ul = strlen(user);
	for (const char *p = list; *p;) {
		const char *c = strchr(p, ',');
		size_t n = c ? (size_t)(c - p) : strlen(p);
		if (n == ul && strncmp(p, user, n) == 0)
			return true;
		p += n + (c ? 1 : 0);
	}
	return false;
}

static bool gr_match(char **f, void *ctx)
{
	struct gr_find *q = ctx;
	uint32_t gid;
	if (!parse_id(f[2], &gid))
		return false;
	if (q->arg && !q->found && strcmp(f[0], q->arg) == 0) {
		q->found = true;
		q->gid = gid;
	}
	if (q->member && has_member(f[3], q->member)) {
		for (size_t i = 0; i < q->n_gids; i++)
			if (q->gids[i] == gid)
				return false;
		uint32_t *ng = realloc(q->gids, (q->n_gids + 1) * sizeof(*ng));
		if (!ng) {
			q->oom = true;
			return true;
		}
		q->gids = ng;
		q->gids[q->n_gids++] = gid;
	}
	return false;
}

void conv_rec_user_free(struct conv_rec_user *u)
{
	free(u->gids);
	free(u->home);
	memset(u, 0, sizeof(*u));
}

int conv_rec_user_resolve(const char *rootfs, const char *user, struct conv_rec_user *u,
			  struct rs_error *err)
{
	memset(u, 0, sizeof(*u));
	cleanup_free char *spec = strdup(user ? user : "");
	if (!spec)
		return rs_err(err, -ENOMEM, "out of memory");
	char *group = strchr(spec, ':');
	if (group)
		*group++ = 0;
	struct rs_buf pw = {0}, gr = {0};
	int rc = read_in_root(rootfs, "etc/passwd", &pw, err);
	if (rc == 0)
		rc = read_in_root(rootfs, "etc/group", &gr, err);

	struct pw_find q = {.arg = *spec ? spec : "0"};
	q.numeric = parse_id(q.arg, &q.id);
	if (rc == 0)
		each_line((char *)pw.data, 7, pw_match, &q);
	if (rc == 0 && !q.found && !q.numeric)
		rc = rs_err(err, -ENOENT, "user '%s': not in the image's /etc/passwd", spec);
	u->uid = q.found ? q.uid : q.id;
	u->gid = q.found ? q.gid : 0;
	u->home = strdup(q.found ? q.home : "/");
	if (rc == 0 && !u->home)
		rc = rs_err(err, -ENOMEM, "out of memory");

	struct gr_find g = {0};
	if (rc == 0 && group && *group && !parse_id(group, &g.gid)) {
		g.arg = group;
		each_line((char *)gr.data, 4, gr_match, &g);
		if (!g.found)
			rc = rs_err(err, -ENOENT, "group '%s': not in the image's /etc/group",
				    group);
	}
	if (rc == 0 && group && *group)
		u->gid = g.gid;
	/* the primary group is among the additional ones (as containerd and
	 * docker do since CVE-2023-25173), then, with no group given, the groups
	 * listing the user */
	free(g.gids);
	g.gids = rc == 0 ? malloc(sizeof(*g.gids)) : NULL;
	if (rc == 0 && !g.gids)
		rc = rs_err(err, -ENOMEM, "out of memory");
	if (rc == 0) {
		g.gids[0] = u->gid;
		g.n_gids = 1;
		g.arg = NULL;
	}
	if (rc == 0 && q.found && !(group && *group)) {
		g.member = q.name;
		each_line((char *)gr.data, 4, gr_match, &g);
		if (g.oom)
			rc = rs_err(err, -ENOMEM, "out of memory");
	}
	if (rc == 0) {
		u->gids = steal_pointer(&g.gids);
		u->n_gids = g.n_gids;
	}
	free(g.gids);
	rs_buf_free(&pw);
	rs_buf_free(&gr);
	if (rc < 0)
		conv_rec_user_free(u);
	return rc;
}
