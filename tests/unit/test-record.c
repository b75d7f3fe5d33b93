// SPDX-License-Identifier: Apache-2.0
/* conv_record's pieces that need no root: the record list file, the
 * --entrypoint / --args splitter, the image user resolved against a rootfs
 * made here, the runtime spec's process, and the signals that stop a run. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "convert/record_internal.h"

/* Fails with the error's message. */
#define assert_ok(expr, err)                                                                       \
	do {                                                                                       \
		int rc_ = (expr);                                                                  \
		if (rc_ != 0)                                                                      \
			fail_msg("%s: %d: %s", #expr, rc_, (err)->msg);                            \
	} while (0)

static char tmpdir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-record.XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return conv_rec_rmtree(tmpdir) == 0 ? 0 : -1;
}

/* tmpdir/rel, in a static buffer (one at a time). */
static const char *tpath(const char *rel)
{
	static char p[PATH_MAX];
	if ((size_t)snprintf(p, sizeof(p), "%s/%s", tmpdir, rel) >= sizeof(p))
		fail_msg("%s: name too long", rel);
	return p;
}

static void write_file(const char *rel, const void *data, size_t len)
{
	FILE *f = fopen(tpath(rel), "we");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static void write_text(const char *rel, const char *text)
{
	write_file(rel, text, strlen(text));
}

/* Asserts that the file rel holds exactly want (at most 255 bytes). */
static void assert_file_text(const char *rel, const char *want)
{
	FILE *f = fopen(tpath(rel), "re");
	assert_non_null(f);
	char buf[256];
	size_t got = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[got] = 0;
	assert_string_equal(buf, want);
}

static size_t n_entries(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(d);
	return n;
}

static void assert_strv(char **v, size_t n, const char *const *want, size_t n_want)
{
	assert_int_equal(n, n_want);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(v[i], want[i]);
}

/* ---- the record list file ------------------------------------------------------ */

/* The list functions on bare path arrays, as most of these tests use them. */
static int list_write(const char *file, const char *const *paths, size_t n, struct rs_error *err)
{
	struct conv_record_result r = {.paths = (char **)paths, .n_paths = n};
	return conv_record_list_write(file, &r, err);
}

static int list_read(const char *file, char ***v, size_t *n, struct rs_error *err)
{
	struct conv_record_result r;
	int rc = conv_record_list_read(file, &r, err);
	*v = r.paths;
	*n = r.n_paths;
	r.paths = NULL;
	r.n_paths = 0;
	conv_record_result_free(&r);
	return rc;
}

/* A file read in part keeps its ranges through write and read; a tab that
 * is not followed by ranges belongs to the path. */
static void test_list_ranges(void **state)
{
	(void)state;
	struct rs_error err = {0};
	static const int64_t cc1[] = {0, 69632, 1048576, 65536, 33280000, 62568};
	char *paths[] = {"/usr/bin/gcc", "/usr/lib/gcc/cc1", "/odd\tname"};
	struct conv_record_result w = {.paths = paths, .n_paths = 3};
	assert_int_equal(conv_record_touched_add(&w, "/usr/lib/gcc/cc1", cc1, 3), 0);
	assert_ok(conv_record_list_write(tpath("r.list"), &w, &err), &err);
	free((char *)w.touched[0].name);
	free((int64_t *)w.touched[0].ranges);
	free(w.touched);
	assert_file_text("r.list", "/usr/bin/gcc\n/usr/lib/gcc/cc1\t0+69632,1048576+65536,"
				   "33280000+62568\n/odd\tname\n");
	struct conv_record_result r;
	assert_ok(conv_record_list_read(tpath("r.list"), &r, &err), &err);
	assert_strv(r.paths, r.n_paths, (const char *const *)paths, 3);
	assert_int_equal(r.n_touched, 1);
	assert_string_equal(r.touched[0].name, "/usr/lib/gcc/cc1");
	assert_int_equal(r.touched[0].nranges, 3);
	assert_memory_equal(r.touched[0].ranges, cc1, sizeof(cc1));
	conv_record_result_free(&r);

	/* malformed ranges are part of the name; a repeated path keeps its first
	 * line's ranges; ranges on a relative path get the '/' too */
	write_text("forms", "/a\t1+2,\n/b\t+5\n/c\t1+2\n/c\t7+8\nd\t3+4\n/e\t\n");
	assert_ok(conv_record_list_read(tpath("forms"), &r, &err), &err);
	static const char *const want[] = {"/a\t1+2,", "/b\t+5", "/c", "/d", "/e\t"};
	assert_strv(r.paths, r.n_paths, want, 5);
	assert_int_equal(r.n_touched, 2);
	assert_string_equal(r.touched[0].name, "/c");
	assert_int_equal(r.touched[0].ranges[0], 1);
	assert_int_equal(r.touched[0].ranges[1], 2);
	assert_string_equal(r.touched[1].name, "/d");
	assert_int_equal(r.touched[1].ranges[1], 4);
	conv_record_result_free(&r);

	/* a line that is only ranges has no path */
	write_text("bare", "/x\n\t1+2\n");
	assert_int_equal(conv_record_list_read(tpath("bare"), &r, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "line 2"));
}

static void test_list_round_trip(void **state)
{
	(void)state;
	struct rs_error err = {0};
	static const char *const paths[] = {"/usr/bin/python3", "/etc/ld.so.cache",
					    "/a b/with space", "/lib/x86_64-linux-gnu/libc.so.6",
					    "/0"};
	size_t n_paths = sizeof(paths) / sizeof(paths[0]);
	assert_ok(list_write(tpath("list"), paths, n_paths, &err), &err);
	char **v = NULL;
	size_t n = 0;
	assert_ok(list_read(tpath("list"), &v, &n, &err), &err);
	assert_strv(v, n, paths, n_paths);
	conv_strv_free(v, n);

	/* written atomically: nothing but the list in the dir, mode 0644 */
	struct stat st;
	assert_int_equal(stat(tpath("list"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	assert_int_equal(n_entries(tmpdir), 1);

	/* overwriting replaces; an empty list is an empty file */
	assert_ok(list_write(tpath("list"), NULL, 0, &err), &err);
	assert_int_equal(stat(tpath("list"), &st), 0);
	assert_int_equal(st.st_size, 0);
	assert_ok(list_read(tpath("list"), &v, &n, &err), &err);
	assert_int_equal(n, 0);
	conv_strv_free(v, n);

	/* a path holding a newline cannot be written (it would read back as two) */
	static const char *const bad[] = {"/ok", "/two\nlines"};
	assert_int_equal(list_write(tpath("list2"), bad, 2, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "newline"));
	assert_int_equal(access(tpath("list2"), F_OK), -1);
}

static void test_list_read_forms(void **state)
{
	(void)state;
	struct rs_error err = {0};
	/* order kept, repeats dropped (first wins), blank lines and CRLF skipped,
	 * a missing leading '/' added, no final newline */
	write_text("l", "/b\n\n/a\r\nc\n/b\n\r\n\nc\n/a\n/d/../e\n//f\n/last");
	char **v = NULL;
	size_t n = 0;
	assert_ok(list_read(tpath("l"), &v, &n, &err), &err);
	static const char *const want[] = {"/b", "/a", "/c", "/d/../e", "//f", "/last"};
	assert_strv(v, n, want, sizeof(want) / sizeof(want[0]));
	conv_strv_free(v, n);

	/* an empty file is an empty list */
	write_text("empty", "");
	assert_ok(list_read(tpath("empty"), &v, &n, &err), &err);
	assert_int_equal(n, 0);
	conv_strv_free(v, n);

	/* many paths (the set grows several times), order kept */
	FILE *f = fopen(tpath("many"), "we");
	assert_non_null(f);
	for (int i = 0; i < 5000; i++)
		fprintf(f, "/p/%d\n/p/%d\n", i, i / 2);
	fclose(f);
	assert_ok(list_read(tpath("many"), &v, &n, &err), &err);
	assert_int_equal(n, 5000);
	for (size_t i = 0; i < n; i++) {
		char want_i[32];
		snprintf(want_i, sizeof(want_i), "/p/%zu", i);
		assert_string_equal(v[i], want_i);
	}
	conv_strv_free(v, n);
}

/* The landmark line of a list with big files read in part stays where it is. */
static void test_list_landmark(void **state)
{
	(void)state;
	struct rs_error err = {0};
	assert_string_equal(CONV_RECORD_LANDMARK, "/.prefetch.landmark");
	static const char *const paths[] = {"/usr/bin/python3", "/etc/ld.so.cache",
					    CONV_RECORD_LANDMARK, "/usr/lib/libicudata.so.74",
					    "/var/lib/pg/wal/000000010000000000000001"};
	size_t n_paths = sizeof(paths) / sizeof(paths[0]);
	assert_ok(list_write(tpath("list"), paths, n_paths, &err), &err);
	char **v = NULL;
	size_t n = 0;
	assert_ok(list_read(tpath("list"), &v, &n, &err), &err);
	assert_strv(v, n, paths, n_paths);
	conv_strv_free(v, n);
	assert_file_text("list", "/usr/bin/python3\n/etc/ld.so.cache\n/.prefetch.landmark\n"
				 "/usr/lib/libicudata.so.74\n"
				 "/var/lib/pg/wal/000000010000000000000001\n");

	/* written by hand: without its '/', repeated (the first one counts), first */
	write_text("hand", ".prefetch.landmark\n/big\n/.prefetch.landmark\n/small\n");
	assert_ok(list_read(tpath("hand"), &v, &n, &err), &err);
	static const char *const want[] = {CONV_RECORD_LANDMARK, "/big", "/small"};
	assert_strv(v, n, want, sizeof(want) / sizeof(want[0]));
	conv_strv_free(v, n);
}

static void test_list_read_errors(void **state)
{
	(void)state;
	struct rs_error err = {0};
	char **v = NULL;
	size_t n = 0;

	/* a missing file: the error names it */
	assert_int_equal(list_read(tpath("no-such.list"), &v, &n, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "no-such.list"));

	/* the longest path that fits PATH_MAX reads; one byte more, as the 3rd
	 * line, is an error naming file and line */
	size_t max = PATH_MAX - 1;
	char *line = malloc(PATH_MAX + 2);
	assert_non_null(line);
	line[0] = '/';
	memset(line + 1, 'x', max - 1);
	line[max] = '\n';
	write_file("long-ok", line, max + 1);
	assert_ok(list_read(tpath("long-ok"), &v, &n, &err), &err);
	assert_int_equal(n, 1);
	assert_int_equal(strlen(v[0]), max);
	conv_strv_free(v, n);

	FILE *f = fopen(tpath("long"), "we");
	assert_non_null(f);
	fputs("/a\n/b\n", f);
	fputc('/', f);
	for (size_t i = 0; i < max; i++)
		fputc('y', f);
	fputs("\n/c\n", f);
	fclose(f);
	assert_int_equal(list_read(tpath("long"), &v, &n, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "long"));
	assert_non_null(strstr(err.msg, "line 3"));

	/* without its '/', a line of PATH_MAX - 1 bytes becomes too long: what
	 * is read must be writable and read back */
	memset(line, 'z', max);
	line[max] = '\n';
	write_file("long-rel", line, max + 1);
	assert_int_equal(list_read(tpath("long-rel"), &v, &n, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "line 1"));
	free(line);

	/* a NUL byte is not part of a path */
	write_file("nul", "/a\n/b\0c\n", 8);
	assert_int_equal(list_read(tpath("nul"), &v, &n, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "line 2"));

	/* a directory is not a list */
	assert_int_equal(mkdir(tpath("dir"), 0755), 0);
	assert_true(list_read(tpath("dir"), &v, &n, &err) < 0);
	assert_non_null(strstr(err.msg, "dir"));
}

/* The stream functions the files use: print then parse is the identity on
 * what parse gives. */
static void test_list_stream(void **state)
{
	(void)state;
	struct rs_error err = {0};
	static const char in[] = "x\n/y\n\n/x\n/z\r\n";
	FILE *f = fmemopen((void *)in, sizeof(in) - 1, "r");
	assert_non_null(f);
	struct conv_record_result r;
	assert_ok(conv_record_list_parse(f, "<mem>", &r, &err), &err);
	fclose(f);
	static const char *const want[] = {"/x", "/y", "/z"};
	assert_strv(r.paths, r.n_paths, want, 3);
	char *buf = NULL;
	size_t len = 0;
	f = open_memstream(&buf, &len);
	assert_non_null(f);
	assert_int_equal(conv_record_list_print(f, &r), 0);
	fclose(f);
	assert_string_equal(buf, "/x\n/y\n/z\n");
	free(buf);
	conv_record_result_free(&r);
}

/* ---- --entrypoint / --args ------------------------------------------------------- */

static void split_ok(const char *s, const char *const *want, size_t n_want)
{
	struct rs_error err = {0};
	char **v = (char **)1;
	size_t n = 99;
	assert_ok(conv_record_split_args(s, &v, &n, &err), &err);
	assert_strv(v, n, want, n_want);
	conv_strv_free(v, n);
}

static void split_bad(const char *s, const char *msg_part)
{
	struct rs_error err = {0};
	char **v = NULL;
	size_t n = 0;
	assert_int_equal(conv_record_split_args(s, &v, &n, &err), -EINVAL);
	if (!strstr(err.msg, msg_part))
		fail_msg("'%s': message '%s' lacks '%s'", s, err.msg, msg_part);
}

static void test_split_args(void **state)
{
	(void)state;
	/* JSON arrays, as ctr-remote takes them: spaces and quotes kept */
	split_ok("[\"/bin/sh\", \"-c\", \"echo a  b; cat '/x y'\"]",
		 (const char *const[]){"/bin/sh", "-c", "echo a  b; cat '/x y'"}, 3);
	split_ok("  [\"a\"]  ", (const char *const[]){"a"}, 1);
	split_ok("[\"\", \"\\u00e9\\n\"]", (const char *const[]){"", "\xc3\xa9\n"}, 2);
	split_ok("[]", NULL, 0);
	/* words: any whitespace separates, none is kept */
	split_ok("/bin/cat /data/c\t/data/a\n",
		 (const char *const[]){"/bin/cat", "/data/c", "/data/a"}, 3);
	split_ok("  sleep   100 ", (const char *const[]){"sleep", "100"}, 2);
	split_ok("a\"b c]", (const char *const[]){"a\"b", "c]"}, 2);
	/* empty: nothing (an empty entrypoint, as docker's --entrypoint "") */
	split_ok("", NULL, 0);
	split_ok(" \t\n", NULL, 0);

	/* bad JSON: the value is named */
	split_bad("[\"a\"", "'[\"a\"'");
	split_bad("[\"a\",]", "not a JSON array");
	split_bad("[\"a\"] trailing", "not a JSON array");
	split_bad("[", "not a JSON array");
	/* elements that are not strings, by index */
	split_bad("[\"/bin/sh\", 1]", "element 1 is not a string");
	split_bad("[null]", "element 0");
	split_bad("[[\"a\"]]", "element 0");
	split_bad("[\"a\", {\"b\": 1}]", "element 1");
	/* a string with a NUL cannot be an argument */
	split_bad("[\"a\\u0000b\"]", "not a JSON array");
}

/* ---- the image user -------------------------------------------------------------- */

static const char passwd[] = "# comment\n"
			     "root:x:0:0:root:/root:/bin/sh\n"
			     "broken line\n"
			     "bad:x:notanumber:0::/:/bin/sh\n"
			     "+nis\n"
			     "app:x:1000:1000:app:/home/app:/bin/sh\n"
			     "nohome:x:1001:1001:::/bin/sh\n";
static const char group[] = "root:x:0:\n"
			    "users:x:100:app,other\n"
			    "app:x:1000:app\n"
			    "staff:x:50:\n"
			    "wheel:x:10:root,app\n"
			    "appish:x:60:apps,xapp\n";

/* A rootfs under tmpdir with etc/passwd and etc/group (NULL: none). */
static const char *make_rootfs(const char *name, const char *pw, const char *gr)
{
	static char root[PATH_MAX];
	snprintf(root, sizeof(root), "%s/%s", tmpdir, name);
	char p[PATH_MAX + 16];
	assert_int_equal(mkdir(root, 0755), 0);
	snprintf(p, sizeof(p), "%s/etc", root);
	assert_int_equal(mkdir(p, 0755), 0);
	char rel[PATH_MAX];
	if (pw) {
		snprintf(rel, sizeof(rel), "%s/etc/passwd", name);
		write_text(rel, pw);
	}
	if (gr) {
		snprintf(rel, sizeof(rel), "%s/etc/group", name);
		write_text(rel, gr);
	}
	return root;
}

static void user_is(const char *root, const char *spec, uint32_t uid, uint32_t gid,
		    const char *home, const uint32_t *gids, size_t n_gids)
{
	struct rs_error err = {0};
	struct conv_rec_user u;
	int rc = conv_rec_user_resolve(root, spec, &u, &err);
	if (rc != 0)
		fail_msg("user '%s': %d: %s", spec ? spec : "(null)", rc, err.msg);
	assert_int_equal(u.uid, uid);
	assert_int_equal(u.gid, gid);
	assert_string_equal(u.home, home);
	assert_int_equal(u.n_gids, n_gids);
	for (size_t i = 0; i < n_gids; i++)
		assert_int_equal(u.gids[i], gids[i]);
	conv_rec_user_free(&u);
}

static void user_fails(const char *root, const char *spec, int code, const char *msg_part)
{
	struct rs_error err = {0};
	struct conv_rec_user u;
	assert_int_equal(conv_rec_user_resolve(root, spec, &u, &err), code);
	if (!strstr(err.msg, msg_part))
		fail_msg("user '%s': message '%s' lacks '%s'", spec, err.msg, msg_part);
	assert_null(u.gids);
	assert_null(u.home);
}

static void test_user(void **state)
{
	(void)state;
	const char *root = make_rootfs("img", passwd, group);
	/* "" and NULL: root, groups listing root */
	user_is(root, "", 0, 0, "/root", (const uint32_t[]){0, 10}, 2);
	user_is(root, NULL, 0, 0, "/root", (const uint32_t[]){0, 10}, 2);
	/* by name and by uid: primary group first, then the groups listing the
	 * user (exact member names, each gid once) */
	user_is(root, "app", 1000, 1000, "/home/app", (const uint32_t[]){1000, 100, 10}, 3);
	user_is(root, "1000", 1000, 1000, "/home/app", (const uint32_t[]){1000, 100, 10}, 3);
	/* a uid not in passwd: gid 0, home / */
	user_is(root, "4242", 4242, 0, "/", (const uint32_t[]){0}, 1);
	/* an empty home field: / */
	user_is(root, "nohome", 1001, 1001, "/", (const uint32_t[]){1001}, 1);
	/* a group given: it is the only one */
	user_is(root, "1000:50", 1000, 50, "/home/app", (const uint32_t[]){50}, 1);
	user_is(root, "app:staff", 1000, 50, "/home/app", (const uint32_t[]){50}, 1);
	user_is(root, "app:7", 1000, 7, "/home/app", (const uint32_t[]){7}, 1);
	user_is(root, "4242:staff", 4242, 50, "/", (const uint32_t[]){50}, 1);
	user_is(root, "root:users", 0, 100, "/root", (const uint32_t[]){100}, 1);
	/* "app:" is app with its own groups */
	user_is(root, "app:", 1000, 1000, "/home/app", (const uint32_t[]){1000, 100, 10}, 3);

	/* unknown names are errors naming them */
	user_fails(root, "nobody", -ENOENT, "'nobody'");
	user_fails(root, "nobody:staff", -ENOENT, "'nobody'");
	user_fails(root, "app:nogroup", -ENOENT, "'nogroup'");
	user_fails(root, "bad", -ENOENT, "'bad'");
	/* a uid the kernel reserves is a name, and not found */
	user_fails(root, "4294967295", -ENOENT, "4294967295");

	/* no passwd or group at all: numeric ids still work, "" is root */
	const char *bare = make_rootfs("bare", NULL, NULL);
	user_is(bare, "", 0, 0, "/", (const uint32_t[]){0}, 1);
	user_is(bare, "12:34", 12, 34, "/", (const uint32_t[]){34}, 1);
	user_fails(bare, "app", -ENOENT, "'app'");
	user_fails(bare, "0:wheel", -ENOENT, "'wheel'");
}

/* etc/passwd and etc/group are read inside the rootfs: a symlink, absolute
 * or with "..", resolves against the rootfs, never the host. */
static void test_user_symlinks(void **state)
{
	(void)state;
	/* the host's files (outside the rootfs) name "evil" as uid 4242 */
	assert_int_equal(mkdir(tpath("host"), 0755), 0);
	write_text("host/passwd", "evil:x:4242:4242:evil:/evil:/bin/sh\n"
				  "root:x:7:7:root:/hostroot:/bin/sh\n");
	write_text("host/group", "evilgrp:x:4343:evil,root\n");
	char abs_pw[PATH_MAX], abs_gr[PATH_MAX];
	snprintf(abs_pw, sizeof(abs_pw), "%s/host/passwd", tmpdir);
	snprintf(abs_gr, sizeof(abs_gr), "%s/host/group", tmpdir);

	/* absolute symlinks to the host's files */
	const char *root = make_rootfs("abs", NULL, NULL);
	assert_int_equal(symlink(abs_pw, tpath("abs/etc/passwd")), 0);
	assert_int_equal(symlink(abs_gr, tpath("abs/etc/group")), 0);
	user_fails(root, "evil", -ENOENT, "'evil'");
	user_fails(root, "0:evilgrp", -ENOENT, "'evilgrp'");
	user_is(root, "", 0, 0, "/", (const uint32_t[]){0}, 1);
	user_is(root, "4242", 4242, 0, "/", (const uint32_t[]){0}, 1);

	/* relative symlinks climbing out with ".." */
	root = make_rootfs("rel", NULL, NULL);
	assert_int_equal(symlink("../../../../../../../../host/passwd", tpath("rel/etc/passwd")),
			 0);
	assert_int_equal(symlink("../../../../../../../../host/group", tpath("rel/etc/group")), 0);
	user_fails(root, "evil", -ENOENT, "'evil'");
	user_is(root, "", 0, 0, "/", (const uint32_t[]){0}, 1);

	/* /etc itself a symlink to the host dir */
	root = make_rootfs("etcdir", NULL, NULL);
	assert_int_equal(rmdir(tpath("etcdir/etc")), 0);
	char abs_host[PATH_MAX];
	snprintf(abs_host, sizeof(abs_host), "%s/host", tmpdir);
	assert_int_equal(symlink(abs_host, tpath("etcdir/etc")), 0);
	user_fails(root, "evil", -ENOENT, "'evil'");

	/* the same links resolve to the image's own files when they exist there */
	root = make_rootfs("inroot", NULL, NULL);
	char inner[PATH_MAX + 16];
	snprintf(inner, sizeof(inner), "inroot%s", abs_host);
	char cmd[PATH_MAX * 2];
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", tpath(inner));
	assert_int_equal(system(cmd), 0);
	snprintf(inner, sizeof(inner), "inroot%s/passwd", abs_host);
	write_text(inner, "img:x:5:6:img:/img:/bin/sh\n");
	assert_int_equal(symlink(abs_pw, tpath("inroot/etc/passwd")), 0);
	user_is(root, "img", 5, 6, "/img", (const uint32_t[]){6}, 1);

	/* a passwd that is not a regular file is an error, not an empty file */
	root = make_rootfs("fifo", NULL, group);
	assert_int_equal(mkfifo(tpath("fifo/etc/passwd"), 0644), 0);
	user_fails(root, "", -EINVAL, "/etc/passwd");
}

/* ---- the runtime spec's process ------------------------------------------------- */

static json_t *spec_process(json_t *img, const struct conv_record_options *o, int want_rc,
			    const char *msg_part)
{
	struct rs_error err = {0};
	uint32_t gids[] = {1000, 100};
	struct conv_rec_user u = {
	    .uid = 1000, .gid = 1000, .gids = gids, .n_gids = 2, .home = (char *)"/home/app"};
	json_t *spec = NULL;
	int rc = conv_rec_spec(img, o, &u, "/merged", &spec, &err);
	if (rc != want_rc)
		fail_msg("conv_rec_spec: %d (want %d): %s", rc, want_rc, err.msg);
	if (msg_part && !strstr(err.msg, msg_part))
		fail_msg("message '%s' lacks '%s'", err.msg, msg_part);
	return spec;
}

static void assert_json(json_t *j, const char *want)
{
	char *got = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

static void test_spec(void **state)
{
	(void)state;
	json_t *img = json_pack("{s:[s,s], s:[s], s:[s,s], s:s}", "Entrypoint", "/bin/sh", "-c",
				"Cmd", "echo hi", "Env", "PATH=/x", "A=1", "WorkingDir", "w");
	assert_non_null(img);
	struct conv_record_options o = {0};
	json_t *spec = spec_process(img, &o, 0, NULL);
	json_t *p = json_object_get(spec, "process");
	assert_json(json_object_get(p, "args"), "[\"/bin/sh\",\"-c\",\"echo hi\"]");
	assert_json(json_object_get(p, "env"), "[\"PATH=/x\",\"A=1\",\"HOME=/home/app\"]");
	assert_json(json_object_get(p, "cwd"), "\"/w\"");
	assert_json(json_object_get(p, "user"),
		    "{\"uid\":1000,\"gid\":1000,\"additionalGids\":[1000,100]}");
	assert_json(json_object_get(json_object_get(spec, "root"), "path"), "\"/merged\"");
	json_decref(spec);

	/* --entrypoint drops Cmd; --env replaces and adds; --cwd */
	static const char *const ep[] = {"/bin/cat"}, *const env[] = {"A=2", "B=3"};
	o.entrypoint = ep;
	o.n_entrypoint = 1;
	o.set_entrypoint = true;
	o.env = env;
	o.n_env = 2;
	o.cwd = "/data";
	spec = spec_process(img, &o, 0, NULL);
	p = json_object_get(spec, "process");
	assert_json(json_object_get(p, "args"), "[\"/bin/cat\"]");
	assert_json(json_object_get(p, "env"), "[\"PATH=/x\",\"A=2\",\"B=3\",\"HOME=/home/app\"]");
	assert_json(json_object_get(p, "cwd"), "\"/data\"");
	json_decref(spec);

	/* bytes JSON cannot hold are named, not "out of memory" */
	static const char *const bad_ep[] = {"/bin/\xff"}, *const bad_env[] = {"X=\xc3("};
	o.entrypoint = bad_ep;
	assert_null(spec_process(img, &o, -EILSEQ, "entrypoint"));
	o.entrypoint = ep;
	o.env = bad_env;
	o.n_env = 1;
	assert_null(spec_process(img, &o, -EILSEQ, "environment variable 'X="));

	/* nothing to run */
	struct conv_record_options none = {0};
	assert_null(spec_process(NULL, &none, -EINVAL, "--entrypoint"));
	json_decref(img);
}

/* ---- the signals that stop a recording -------------------------------------------- */

static void test_interrupted(void **state)
{
	(void)state;
	sigset_t stop, old;
	conv_rec_stop_signals(&stop);
	assert_int_equal(sigismember(&stop, SIGINT) + sigismember(&stop, SIGTERM) +
			     sigismember(&stop, SIGHUP) + sigismember(&stop, SIGPIPE),
			 3);
	assert_int_equal(sigprocmask(SIG_BLOCK, &stop, &old), 0);
	sigset_t other;
	sigemptyset(&other);
	sigaddset(&other, SIGUSR1);
	assert_int_equal(sigprocmask(SIG_BLOCK, &other, NULL), 0);
	assert_false(conv_rec_interrupted());
	raise(SIGUSR1); /* pending, but not one of them */
	assert_false(conv_rec_interrupted());
	raise(SIGTERM);
	assert_true(conv_rec_interrupted());
	int sig;
	assert_int_equal(sigwait(&stop, &sig), 0);
	assert_int_equal(sig, SIGTERM);
	assert_false(conv_rec_interrupted());
	assert_int_equal(sigwait(&other, &sig), 0);
	assert_int_equal(sigprocmask(SIG_SETMASK, &old, NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_list_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_list_read_forms, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_list_landmark, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_list_ranges, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_list_read_errors, setup, teardown),
	    cmocka_unit_test(test_list_stream),
	    cmocka_unit_test(test_split_args),
	    cmocka_unit_test_setup_teardown(test_user, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_user_symlinks, setup, teardown),
	    cmocka_unit_test(test_spec),
	    cmocka_unit_test(test_interrupted),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
