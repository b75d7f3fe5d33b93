// SPDX-License-Identifier: Apache-2.0
/* Unit tests of the registry transport's pure parts: references,
 * WWW-Authenticate, hosts.toml (certs.d), docker config.json and helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "registry/transport.h"

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

/* ---- references ----------------------------------------------------------- */

static void expect_ref(const char *s, const char *domain, const char *path, const char *tag,
		       const char *digest)
{
	struct reg_ref r;
	struct rs_error err = {0};
	int rc = reg_ref_parse(s, &r, &err);
	if (rc != 0)
		print_error("parsing '%s': %s\n", s, err.msg);
	assert_int_equal(rc, 0);
	assert_string_equal(r.domain, domain);
	assert_string_equal(r.path, path);
	if (tag)
		assert_string_equal(r.tag, tag);
	else
		assert_null(r.tag);
	if (digest)
		assert_string_equal(r.digest, digest);
	else
		assert_null(r.digest);
	reg_ref_free(&r);
}

static void expect_bad_ref(const char *s, const char *needle)
{
	struct reg_ref r;
	struct rs_error err = {0};
	int rc = reg_ref_parse(s, &r, &err);
	if (rc == 0)
		print_error("'%s' parsed as %s/%s\n", s, r.domain, r.path);
	assert_int_equal(rc, -EINVAL);
	if (!strstr(err.msg, needle))
		print_error("'%s': message '%s' lacks '%s'\n", s, err.msg, needle);
	assert_non_null(strstr(err.msg, needle));
	assert_non_null(strstr(err.msg, "invalid reference '"));
}

static void test_ref_good(void **state)
{
	expect_ref("ubuntu", "docker.io", "library/ubuntu", "latest", NULL);
	expect_ref("ubuntu:22.04", "docker.io", "library/ubuntu", "22.04", NULL);
	expect_ref("docker.io/library/ubuntu", "docker.io", "library/ubuntu", "latest", NULL);
	expect_ref("docker.io/ubuntu", "docker.io", "library/ubuntu", "latest", NULL);
	expect_ref("index.docker.io/foo/bar:1", "docker.io", "foo/bar", "1", NULL);
	expect_ref("foo/bar", "docker.io", "foo/bar", "latest", NULL);
	expect_ref("localhost/foo", "localhost", "foo", "latest", NULL);
	expect_ref("localhost:5000/foo/bar:v1.2_x-y", "localhost:5000", "foo/bar", "v1.2_x-y",
		   NULL);
	expect_ref("127.0.0.1:5000/x@sha256:" HEX64, "127.0.0.1:5000", "x", NULL, "sha256:" HEX64);
	expect_ref("[::1]:5000/x:tag", "[::1]:5000", "x", "tag", NULL);
	expect_ref("[fe80::1]/a/b", "[fe80::1]", "a/b", "latest", NULL);
	expect_ref("reg.example.com/a/b:t@sha256:" HEX64, "reg.example.com", "a/b", "t",
		   "sha256:" HEX64);
	expect_ref("a__b/c.d-e---f", "docker.io", "a__b/c.d-e---f", "latest", NULL);
	expect_ref("localhost:5000", "docker.io", "library/localhost", "5000", NULL);
	expect_ref("Host.Example/x", "Host.Example", "x", "latest", NULL);

	struct reg_ref r;
	assert_int_equal(reg_ref_parse("q.io:443/a/b:t@sha256:" HEX64, &r, NULL), 0);
	char *s = reg_ref_string(&r);
	assert_string_equal(s, "q.io:443/a/b:t@sha256:" HEX64);
	assert_string_equal(reg_ref_reference(&r), "t");
	free(s);
	reg_ref_free(&r);
	assert_int_equal(reg_ref_parse("busybox@sha256:" HEX64, &r, NULL), 0);
	assert_string_equal(reg_ref_reference(&r), "sha256:" HEX64);
	s = reg_ref_string(&r);
	assert_string_equal(s, "docker.io/library/busybox@sha256:" HEX64);
	free(s);
	reg_ref_free(&r);
}

static void test_ref_bad(void **state)
{
	char long_name[300], long_tag[200];
	memset(long_name, 'a', sizeof(long_name));
	memcpy(long_name, "r.io/", 5);
	long_name[299] = '\0';
	snprintf(long_tag, sizeof(long_tag), "x:%0130d", 0);

	expect_bad_ref("", "empty reference");
	expect_bad_ref("Ubuntu", "must be lowercase");
	expect_bad_ref("foo/Bar", "must be lowercase");
	expect_bad_ref("foo:bad tag", "space");
	expect_bad_ref("foo:-bad", "invalid tag '-bad'");
	expect_bad_ref("foo@sha512:abcd", "unsupported digest algorithm 'sha512'");
	expect_bad_ref("foo@sha256:abc", "64 lowercase hex");
	expect_bad_ref("foo@sha256:" HEX64 "@x", "more than one '@'");
	expect_bad_ref("foo//bar", "empty path component");
	expect_bad_ref("foo/bar_", "invalid path component 'bar_'");
	expect_bad_ref("a..b", "invalid path component 'a..b'");
	expect_bad_ref("foo/.bar", "invalid path component '.bar'");
	expect_bad_ref("host:port:5000/x", "invalid port");
	expect_bad_ref("host:123456/x", "invalid port");
	expect_bad_ref("[::1/x", "unterminated '['");
	expect_bad_ref("[zz::1]/x", "IPv6");
	expect_bad_ref("-bad.host/x", "invalid registry host name");
	expect_bad_ref("r.io/", "empty repository name");
	expect_bad_ref(":tag", "empty repository name");
	expect_bad_ref(long_name, "longer than 255");
	expect_bad_ref(long_tag, "tag longer than 128");
	expect_bad_ref(HEX64, "image ID");
}

/* ---- WWW-Authenticate ---------------------------------------------------- */

static void test_challenge(void **state)
{
	struct reg_challenge ch;
	assert_int_equal(reg_challenge_parse("Bearer realm=\"https://auth.docker.io/token\","
					     "service=\"registry.docker.io\","
					     "scope=\"repository:samalba/my-app:pull,push\"",
					     &ch),
			 0);
	assert_int_equal(ch.scheme, REG_AUTH_BEARER);
	assert_string_equal(ch.realm, "https://auth.docker.io/token");
	assert_string_equal(ch.service, "registry.docker.io");
	assert_string_equal(ch.scope, "repository:samalba/my-app:pull,push");
	assert_null(ch.error);
	reg_challenge_free(&ch);

	assert_int_equal(reg_challenge_parse("Basic realm=\"Registry Realm\"", &ch), 0);
	assert_int_equal(ch.scheme, REG_AUTH_BASIC);
	assert_string_equal(ch.realm, "Registry Realm");
	reg_challenge_free(&ch);

	/* several challenges: Bearer wins; unquoted values; escapes; odd spacing */
	assert_int_equal(reg_challenge_parse("Basic realm=\"x, y\", bearer  realm = "
					     "\"https://a/t?x=1\" , service=svc,"
					     "error=\"insufficient_scope\", scope=\"a\\\"b\"",
					     &ch),
			 0);
	assert_int_equal(ch.scheme, REG_AUTH_BEARER);
	assert_string_equal(ch.realm, "https://a/t?x=1");
	assert_string_equal(ch.service, "svc");
	assert_string_equal(ch.error, "insufficient_scope");
	assert_string_equal(ch.scope, "a\"b");
	reg_challenge_free(&ch);

	char *m = reg_auth_merge_scope("repository:a:pull,push", "repository:a:pull");
	assert_string_equal(m, "repository:a:pull,push");
	free(m);
	m = reg_auth_merge_scope("repository:a:pull", "repository:a:push repository:b/c:pull");
	assert_string_equal(m, "repository:a:pull repository:a:push repository:b/c:pull");
	free(m);
	m = reg_auth_merge_scope("repository:ab:pull", "repository:a:pull");
	assert_string_equal(m, "repository:ab:pull repository:a:pull");
	free(m);
	m = reg_auth_merge_scope("repository:a:pull", NULL);
	assert_string_equal(m, "repository:a:pull");
	free(m);

	assert_int_equal(reg_challenge_parse("Negotiate abc", &ch), -EINVAL);
	assert_int_equal(reg_challenge_parse("Bearer service=\"x\"", &ch), -EINVAL);
	assert_int_equal(reg_challenge_parse("", &ch), -EINVAL);
	assert_int_equal(reg_challenge_parse("Bearer realm=\"unterminated", &ch), 0);
	assert_string_equal(ch.realm, "unterminated");
	reg_challenge_free(&ch);
}

/* ---- temp files ------------------------------------------------------------ */

static char tmpdir[256];

static void put(const char *rel, const char *text)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", tmpdir, rel);
	for (char *s = p + strlen(tmpdir) + 1; (s = strchr(s, '/')); s++) {
		*s = '\0';
		mkdir(p, 0755);
		*s = '/';
	}
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int setup_tmp(void **state)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-registry-ref.XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmp(void **state)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static char *at(const char *rel)
{
	static char p[4][512];
	static int i;
	i = (i + 1) % 4;
	snprintf(p[i], sizeof(p[i]), "%s/%s", tmpdir, rel);
	return p[i];
}

/* ---- hosts.toml ------------------------------------------------------------ */

static void test_hosts_toml(void **state)
{
	put("certs.d/reg.example_5000_/b.crt",
	    "-----BEGIN CERTIFICATE-----\nTESTCA\n-----END CERTIFICATE-----\n");
	put("certs.d/reg.example_5000_/hosts.toml",
	    "server = \"https://reg.example:5000\"\n"
	    "\n"
	    "[host.\"https://mirror-b.example\"]\n"
	    "  capabilities = [\"pull\"]\n"
	    "  ca = \"b.crt\"\n"
	    "[host.\"http://mirror-a.example/sub/\"]\n"
	    "  capabilities = [\"pull\", \"resolve\"]\n"
	    "  skip_verify = true\n"
	    "  client = [[\"c.cert\", \"/abs/c.key\"], \"d.pem\"]\n"
	    "  dial_timeout = \"1500ms\"\n"
	    "  [host.\"http://mirror-a.example/sub/\".header]\n"
	    "    x-one = \"1\"\n"
	    "    x-two = [\"a\", \"b\"]\n"
	    "[host.\"https://np.example/custom\"]\n"
	    "  override_path = true\n");
	struct reg_hosts hs;
	struct rs_error err = {0};
	int rc = reg_hosts_load(at("certs.d"), "reg.example:5000", false, &hs, &err);
	if (rc)
		print_error("%s\n", err.msg);
	assert_int_equal(rc, 0);
	assert_int_equal(hs.n, 4);
	assert_string_equal(hs.v[0].host, "mirror-b.example");
	assert_string_equal(hs.v[0].scheme, "https");
	assert_string_equal(hs.v[0].path, "/v2");
	assert_int_equal(hs.v[0].caps, REG_CAP_PULL);
	assert_true(hs.v[0].mirror);
	assert_int_equal(hs.v[0].n_ca, 1);
	assert_string_equal(hs.v[0].ca[0], at("certs.d/reg.example_5000_/b.crt"));
	assert_non_null(memmem(hs.v[0].ca_blob.data, hs.v[0].ca_blob.len, "TESTCA", 6));
	assert_int_equal(hs.v[0].skip_verify, -1);

	assert_string_equal(hs.v[1].host, "mirror-a.example");
	assert_string_equal(hs.v[1].scheme, "http");
	assert_string_equal(hs.v[1].path, "/sub/v2");
	assert_int_equal(hs.v[1].caps, REG_CAP_PULL | REG_CAP_RESOLVE);
	assert_int_equal(hs.v[1].skip_verify, 1);
	assert_int_equal(hs.v[1].n_clients, 2);
	assert_string_equal(hs.v[1].clients[0].cert, at("certs.d/reg.example_5000_/c.cert"));
	assert_string_equal(hs.v[1].clients[0].key, "/abs/c.key");
	assert_null(hs.v[1].clients[1].key);
	assert_int_equal(hs.v[1].dial_timeout_ms, 1500);
	assert_int_equal(hs.v[1].n_headers, 3);
	assert_string_equal(hs.v[1].headers[0], "x-one: 1");
	assert_string_equal(hs.v[1].headers[1], "x-two: a");
	assert_string_equal(hs.v[1].headers[2], "x-two: b");

	assert_string_equal(hs.v[2].path, "/custom");
	assert_string_equal(hs.v[3].host, "reg.example:5000");
	assert_string_equal(hs.v[3].path, "/v2");
	assert_false(hs.v[3].mirror);
	assert_int_equal(hs.v[3].caps, REG_CAP_PULL | REG_CAP_RESOLVE | REG_CAP_PUSH);
	reg_hosts_free(&hs);

	/* _default, when nothing closer exists; no server: the domain itself */
	put("certs.d/_default/hosts.toml", "[host.\"https://all.example\"]\n");
	assert_int_equal(reg_hosts_load(at("certs.d"), "other.example", true, &hs, &err), 0);
	assert_int_equal(hs.n, 2);
	assert_string_equal(hs.v[0].host, "all.example");
	assert_string_equal(hs.v[1].host, "other.example");
	assert_string_equal(hs.v[1].scheme, "http");
	reg_hosts_free(&hs);

	/* Docker's legacy certificate files */
	put("legacy/leg.example/ca.crt", "-----BEGIN CERTIFICATE-----\nX\n");
	put("legacy/leg.example/me.cert", "cert");
	put("legacy/leg.example/me.key", "key");
	assert_int_equal(reg_hosts_load(at("legacy"), "leg.example", false, &hs, &err), 0);
	assert_int_equal(hs.n, 1);
	assert_string_equal(hs.v[0].scheme, "https");
	assert_int_equal(hs.v[0].n_ca, 1);
	assert_int_equal(hs.v[0].n_clients, 1);
	assert_string_equal(hs.v[0].clients[0].key, at("legacy/leg.example/me.key"));
	reg_hosts_free(&hs);

	/* a host entry that is the server itself is not tried twice */
	put("certs.d/dup.example/hosts.toml", "[host.\"https://dup.example\"]\n"
					      "  capabilities = [\"pull\"]\n");
	assert_int_equal(reg_hosts_load(at("certs.d"), "dup.example", false, &hs, &err), 0);
	assert_int_equal(hs.n, 1);
	assert_int_equal(hs.v[0].caps, REG_CAP_PULL);
	reg_hosts_free(&hs);

	/* nothing configured; docker.io's server */
	assert_int_equal(reg_hosts_load(at("none"), "docker.io", true, &hs, &err), 0);
	assert_int_equal(hs.n, 1);
	assert_string_equal(hs.v[0].scheme, "https");
	assert_string_equal(hs.v[0].host, "registry-1.docker.io");
	assert_false(hs.v[0].mirror);
	reg_hosts_free(&hs);
}

static void expect_hosts_error(const char *toml, const char *needle)
{
	put("bad/bad.example/hosts.toml", toml);
	struct reg_hosts hs;
	struct rs_error err = {0};
	assert_int_equal(reg_hosts_load(at("bad"), "bad.example", false, &hs, &err), -EINVAL);
	if (!strstr(err.msg, needle))
		print_error("message '%s' lacks '%s'\n", err.msg, needle);
	assert_non_null(strstr(err.msg, needle));
	assert_non_null(strstr(err.msg, "bad.example/hosts.toml"));
}

static void test_hosts_errors(void **state)
{
	expect_hosts_error("# c\nserver = \n", "hosts.toml:2:");
	expect_hosts_error("[host.\"https://m\"]\n  capabilities = [\"pull\", \"fly\"]\n",
			   ":2: unknown capability \"fly\"");
	expect_hosts_error("\n\n[host.\"https://m\"]\nskip_verify = \"yes\"\n",
			   ":4: \"skip_verify\" must be true or false");
	expect_hosts_error("[host.\"ftp://m\"]\n", "scheme must be http or https");
	expect_hosts_error("ca = 3\n", "\"ca\" must be a string or an array of strings");
	expect_hosts_error("[host.\"https://m\"]\nclient = [[\"a\"]]\n", "[cert, key]");
	struct reg_hosts hs;
	struct rs_error err = {0};
	put("bad/bad.example/hosts.toml", "[host.\"https://m\"]\nca = \"missing.pem\"\n");
	assert_int_equal(reg_hosts_load(at("bad"), "bad.example", false, &hs, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "cannot read CA file"));
	assert_non_null(strstr(err.msg, "missing.pem"));
}

/* ---- docker config and credential helpers ----------------------------------- */

static void test_creds(void **state)
{
	/* base64("alice:s3cret:x") */
	put("docker/config.json",
	    "{\"auths\": {\n"
	    "  \"https://reg.example:5000/v1/\": {\"auth\": \"YWxpY2U6czNjcmV0Ong=\"},\n"
	    "  \"https://index.docker.io/v1/\": {\"username\": \"bob\", \"password\": \"pw\"},\n"
	    "  \"idt.example\": {\"identitytoken\": \"refresh-me\"},\n"
	    "  \"bad.example\": {\"auth\": \"bm9jb2xvbg==\"}\n"
	    " },\n"
	    " \"credHelpers\": {\"helper.example\": \"test\"},\n"
	    " \"credsStore\": \"test\"\n"
	    "}\n");
	put("bin/docker-credential-test",
	    "#!/bin/sh\n"
	    "[ \"$1\" = get ] || exit 3\n"
	    "read server\n"
	    "case \"$server\" in\n"
	    "helper.example) echo "
	    "'{\"ServerURL\":\"x\",\"Username\":\"carol\",\"Secret\":\"hs\"}';;\n"
	    "tok.example) echo "
	    "'{\"ServerURL\":\"x\",\"Username\":\"<token>\",\"Secret\":\"it\"}';;\n"
	    "broken.example) echo 'oops'; exit 2;;\n"
	    "*) echo 'credentials not found in native keychain'; exit 1;;\n"
	    "esac\n");
	chmod(at("bin/docker-credential-test"), 0755);
	char path[2048];
	const char *old = getenv("PATH");
	snprintf(path, sizeof(path), "%s:%s", at("bin"), old ? old : "/usr/bin:/bin");
	setenv("PATH", path, 1);

	const char *cfg = at("docker/config.json");
	struct reg_creds cr;
	struct rs_error err = {0};
	assert_int_equal(reg_creds_load(cfg, "reg.example:5000", &cr, &err), 0);
	assert_string_equal(cr.user, "alice");
	assert_string_equal(cr.secret, "s3cret:x");
	reg_creds_free(&cr);

	assert_int_equal(reg_creds_load(cfg, "docker.io", &cr, &err), 0);
	assert_string_equal(cr.user, "bob");
	assert_string_equal(cr.secret, "pw");
	reg_creds_free(&cr);

	assert_int_equal(reg_creds_load(cfg, "idt.example", &cr, &err), 0);
	assert_null(cr.user);
	assert_string_equal(cr.identity_token, "refresh-me");
	reg_creds_free(&cr);

	assert_int_equal(reg_creds_load(cfg, "helper.example", &cr, &err), 0);
	assert_string_equal(cr.user, "carol");
	assert_string_equal(cr.secret, "hs");
	reg_creds_free(&cr);

	/* credsStore for the rest */
	assert_int_equal(reg_creds_load(cfg, "tok.example", &cr, &err), 0);
	assert_null(cr.user);
	assert_string_equal(cr.identity_token, "it");
	reg_creds_free(&cr);
	assert_int_equal(reg_creds_load(cfg, "nobody.example", &cr, &err), 0);
	assert_null(cr.user);
	assert_null(cr.identity_token);
	assert_int_equal(reg_creds_load(cfg, "broken.example", &cr, &err), -EACCES);
	assert_non_null(strstr(err.msg, "docker-credential-test failed for broken.example"));
	assert_null(strstr(err.msg, "oops"));

	/* a bad auth entry: the error names the host, not the secret */
	assert_int_equal(reg_creds_load(cfg, "bad.example", &cr, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "bad.example"));
	assert_null(strstr(err.msg, "bm9jb2xvbg"));
	assert_null(strstr(err.msg, "nocolon"));

	/* no config at all: no credentials, no error */
	assert_int_equal(reg_creds_load(at("docker/none.json"), "x.example", &cr, &err), 0);
	assert_null(cr.user);
	put("docker/broken.json", "{\"auths\": {\"x\": {\"auth\": \"c2VjcmV0\"}\n");
	assert_int_equal(reg_creds_load(at("docker/broken.json"), "x", &cr, &err), -EINVAL);
	assert_null(strstr(err.msg, "c2VjcmV0"));

	/* $DOCKER_CONFIG */
	setenv("DOCKER_CONFIG", at("docker"), 1);
	assert_int_equal(reg_creds_load(NULL, "docker.io", &cr, &err), 0);
	assert_string_equal(cr.user, "bob");
	reg_creds_free(&cr);
	unsetenv("DOCKER_CONFIG");
	if (old)
		setenv("PATH", old, 1);
}

/* podman's auth.json files: where they are looked for, and that they come
 * before the docker config. */
static void test_auth_files(void **state)
{
	char **p;
	size_t n;
	char want[128];
	setenv("REGISTRY_AUTH_FILE", "/a/auth.json", 1);
	setenv("XDG_RUNTIME_DIR", "/run/user/7", 1);
	setenv("XDG_CONFIG_HOME", "/cfg", 1);
	assert_int_equal(reg_containers_auth_files(&p, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(p[0], "/a/auth.json");
	assert_string_equal(p[1], "/cfg/containers/auth.json");
	reg_auth_files_free(p, n);
	unsetenv("REGISTRY_AUTH_FILE");
	unsetenv("XDG_CONFIG_HOME");
	char *home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
	setenv("HOME", "/h", 1);
	assert_int_equal(reg_containers_auth_files(&p, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(p[0], "/run/user/7/containers/auth.json");
	assert_string_equal(p[1], "/h/.config/containers/auth.json");
	reg_auth_files_free(p, n);
	unsetenv("XDG_RUNTIME_DIR");
	assert_int_equal(reg_containers_auth_files(&p, &n), 0);
	snprintf(want, sizeof(want), "/run/containers/%u/auth.json", (unsigned)getuid());
	assert_string_equal(p[0], want);
	reg_auth_files_free(p, n);
	if (home)
		setenv("HOME", home, 1);
	free(home);

	/* The first file with credentials for the host gives them; a missing
	 * one is passed by; then the docker config. */
	put("auth/auth.json", "{\"auths\": {\"podman.example\": {\"auth\": \"cDpwdw==\"}}}");
	put("auth/docker.json", "{\"auths\": {\"podman.example\": {\"auth\": \"ZDpkZA==\"},"
				"\"docker.example\": {\"auth\": \"ZDpkZA==\"}}}");
	char missing[300], authf[300], dockerf[300];
	snprintf(missing, sizeof(missing), "%s/auth/none.json", tmpdir);
	snprintf(authf, sizeof(authf), "%s/auth/auth.json", tmpdir);
	snprintf(dockerf, sizeof(dockerf), "%s/auth/docker.json", tmpdir);
	const char *files[] = {missing, authf};
	struct reg_options o = {.docker_config = dockerf, .auth_files = files, .n_auth_files = 2};
	struct reg_client *c;
	struct rs_error err = {0};
	assert_int_equal(reg_client_new(&o, &c, &err), 0);
	struct reg_creds cr;
	assert_int_equal(reg_creds_find(c, "podman.example", &cr, &err), 0);
	assert_string_equal(cr.user, "p");
	assert_string_equal(cr.secret, "pw");
	reg_creds_free(&cr);
	assert_int_equal(reg_creds_find(c, "docker.example", &cr, &err), 0);
	assert_string_equal(cr.user, "d");
	reg_creds_free(&cr);
	assert_int_equal(reg_creds_find(c, "nobody.example", &cr, &err), 0);
	assert_null(cr.user);
	reg_client_free(c);
}

static void test_error_message(void **state)
{
	const char *j = "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"manifest "
			"unknown\"},{\"code\":\"X\",\"message\":\"a\\nb\"}]}";
	char *m = reg_error_message(j, strlen(j));
	assert_string_equal(m, "MANIFEST_UNKNOWN: manifest unknown; X: a b");
	free(m);
	j = "{\"details\":\"incorrect username or password\"}";
	m = reg_error_message(j, strlen(j));
	assert_string_equal(m, "incorrect username or password");
	free(m);
	assert_null(reg_error_message("<html>", 6));

	struct reg_ref ref = {.domain = "r.example", .path = "x"};
	struct reg_http_req req = {.method = "GET", .ref = &ref, .path = "manifests/latest"};
	struct reg_http_resp resp = {.status = 404, .content_type = "text/html"};
	struct rs_error err;
	assert_int_equal(reg_http_status_error(&req, &resp, "manifest", &err), -ENOENT);
	assert_string_equal(
	    err.msg, "manifest: r.example answered HTTP 404 with an HTML page, not a registry "
		     "reply");
	const char *ej = "{\"errors\":[{\"code\":\"DENIED\",\"message\":\"no push\"}]}";
	struct reg_http_resp resp2 = {.status = 403,
				      .content_type = "application/json",
				      .body = {(uint8_t *)ej, strlen(ej), strlen(ej)}};
	assert_int_equal(reg_http_status_error(&req, &resp2, "push", &err), -EACCES);
	assert_string_equal(err.msg, "push: r.example answered HTTP 403: DENIED: no push");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ref_good),      cmocka_unit_test(test_ref_bad),
	    cmocka_unit_test(test_challenge),     cmocka_unit_test(test_hosts_toml),
	    cmocka_unit_test(test_hosts_errors),  cmocka_unit_test(test_creds),
	    cmocka_unit_test(test_error_message), cmocka_unit_test(test_auth_files),
	};
	return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
