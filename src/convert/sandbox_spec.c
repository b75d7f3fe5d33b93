// SPDX-License-Identifier: Apache-2.0
/* The OCI runtime spec (runc's config.json) for a recording run: the image
 * config's process (Entrypoint + Cmd, Env, WorkingDir; overrides as docker
 * applies them), its user, and the sandbox containerd gives a container by
 * default (its capability set, masked and read-only paths, mounts) with new
 * pid, ipc, uts, mount and network namespaces: the network one is empty, so
 * the workload has only a loopback interface that is down. */
#include <errno.h>
#include <string.h>

#include "record_internal.h"

#define DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* containerd's default set (what `ctr run` and the reference optimizer use) */
static const char *const caps[] = {
    "CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",
    "CAP_MKNOD",   "CAP_NET_RAW",      "CAP_SETGID",           "CAP_SETUID",
    "CAP_SETFCAP", "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
    "CAP_KILL",    "CAP_AUDIT_WRITE",
};

static const char *const masked[] = {
    "/proc/acpi",          "/proc/asound",
    "/proc/kcore",         "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats",   "/proc/sched_debug",
    "/sys/firmware",       "/sys/devices/virtual/powercap",
    "/proc/scsi",
};

static const char *const readonly[] = {
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
};

static const char mounts_json[] =
    "["
    "{\"destination\":\"/proc\",\"type\":\"proc\",\"source\":\"proc\","
    "\"options\":[\"nosuid\",\"noexec\",\"nodev\"]},"
    "{\"destination\":\"/dev\",\"type\":\"tmpfs\",\"source\":\"tmpfs\","
    "\"options\":[\"nosuid\",\"strictatime\",\"mode=755\",\"size=65536k\"]},"
    "{\"destination\":\"/dev/pts\",\"type\":\"devpts\",\"source\":\"devpts\","
    "\"options\":[\"nosuid\",\"noexec\",\"newinstance\",\"ptmxmode=0666\",\"mode=0620\","
    "\"gid=5\"]},"
    "{\"destination\":\"/dev/shm\",\"type\":\"tmpfs\",\"source\":\"shm\","
    "\"options\":[\"nosuid\",\"noexec\",\"nodev\",\"mode=1777\",\"size=65536k\"]},"
    "{\"destination\":\"/dev/mqueue\",\"type\":\"mqueue\",\"source\":\"mqueue\","
    "\"options\":[\"nosuid\",\"noexec\",\"nodev\"]},"
    "{\"destination\":\"/sys\",\"type\":\"sysfs\",\"source\":\"sysfs\","
    "\"options\":[\"nosuid\",\"noexec\",\"nodev\",\"ro\"]},"
    "{\"destination\":\"/sys/fs/cgroup\",\"type\":\"cgroup\",\"source\":\"cgroup\","
    "\"options\":[\"nosuid\",\"noexec\",\"nodev\",\"relatime\",\"ro\"]},"
    "{\"destination\":\"/run\",\"type\":\"tmpfs\",\"source\":\"tmpfs\","
    "\"options\":[\"nosuid\",\"strictatime\",\"mode=755\",\"size=65536k\"]}"
    "]";

/* Appends n strings to the array a: -EILSEQ when one is not UTF-8 (which JSON
 * cannot hold; jansson refuses it the way it fails to allocate), -ENOMEM. */
static int append_strs(json_t *a, const char *const *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		json_t *str = json_string(v[i]);
		if (!str)
			return -EILSEQ;
		if (json_array_append_new(a, str) < 0)
			return -ENOMEM;
	}
	return 0;
}

static json_t *str_array(const char *const *v, size_t n)
{
	json_t *a = json_array();
	if (a && append_strs(a, v, n) < 0) {
		json_decref(a);
		return NULL;
	}
	return a;
}

/* An override's strings onto args. */
static int append_override(json_t *args, const char *const *v, size_t n, const char *what,
			   struct rs_error *err)
{
	int rc = append_strs(args, v, n);
	if (rc == -EILSEQ)
		return rs_err(err, rc, "the %s override is not valid UTF-8", what);
	return rc < 0 ? rs_err(err, rc, "out of memory") : 0;
}

/* Appends the strings of a config array (NULL or null: nothing). */
static int append_config(json_t *dst, json_t *src, const char *what, struct rs_error *err)
{
	if (!src || json_is_null(src))
		return 0;
	if (!json_is_array(src))
		return rs_err(err, -EINVAL, "image config: %s is not an array", what);
	size_t i;
	json_t *e;
	json_array_foreach(src, i, e)
	{
		if (!json_is_string(e) || strlen(json_string_value(e)) != json_string_length(e))
			return rs_err(err, -EINVAL, "image config: %s[%zu] is not a string", what,
				      i);
		if (json_array_append(dst, e) < 0)
			return rs_err(err, -ENOMEM, "out of memory");
	}
	return 0;
}

static int build_args(json_t *img, const struct conv_record_options *o, json_t *args,
		      struct rs_error *err)
{
	int rc;
	if (o->set_entrypoint)
		rc = append_override(args, o->entrypoint, o->n_entrypoint, "entrypoint", err);
	else
		rc = append_config(args, json_object_get(img, "Entrypoint"), "Entrypoint", err);
	if (rc == 0 && o->set_args)
		rc = append_override(args, o->args, o->n_args, "args", err);
	else if (rc == 0 && !o->set_entrypoint)
		rc = append_config(args, json_object_get(img, "Cmd"), "Cmd", err);
	if (rc < 0)
		return rc;
	if (json_array_size(args) == 0)
		return rs_err(
		    err, -EINVAL,
		    "the image has neither Entrypoint nor Cmd: give --entrypoint or --args");
	return 0;
}

/* Sets "K=V" in env, replacing an entry with the same key (or, without
 * replace, keeping it): -EILSEQ when kv is not UTF-8, -ENOMEM. */
static int env_set(json_t *env, const char *kv, bool replace)
{
	const char *eq = strchr(kv, '=');
	size_t klen = eq ? (size_t)(eq - kv) : strlen(kv);
	size_t i;
	json_t *e;
	json_array_foreach(env, i, e)
	{
		const char *s = json_string_value(e);
		if (strncmp(s, kv, klen) == 0 && (s[klen] == '=' || s[klen] == 0))
			break;
	}
	if (i < json_array_size(env) && !replace)
		return 0;
	json_t *str = json_string(kv);
	if (!str)
		return -EILSEQ;
	int rc = i < json_array_size(env) ? json_array_set_new(env, i, str)
					  : json_array_append_new(env, str);
	return rc < 0 ? -ENOMEM : 0;
}

static int env_set_checked(json_t *env, const char *kv, bool replace, struct rs_error *err)
{
	int rc = env_set(env, kv, replace);
	if (rc == -EILSEQ)
		return rs_err(err, rc, "environment variable '%s': not valid UTF-8", kv);
	return rc < 0 ? rs_err(err, rc, "out of memory") : 0;
}

static int build_env(json_t *img, const struct conv_record_options *o,
		     const struct conv_rec_user *u, json_t *env, struct rs_error *err)
{
	int rc = append_config(env, json_object_get(img, "Env"), "Env", err);
	for (size_t i = 0; rc == 0 && i < o->n_env; i++)
		rc = env_set_checked(env, o->env[i], true, err);
	cleanup_free char *home = NULL;
	if (rc == 0 && asprintf(&home, "HOME=%s", u->home ? u->home : "/") < 0) {
		home = NULL;
		rc = rs_err(err, -ENOMEM, "out of memory");
	}
	if (rc == 0)
		rc = env_set_checked(env, DEFAULT_PATH, false, err);
	if (rc == 0)
		rc = env_set_checked(env, home, false, err);
	return rc;
}

static int build_process(json_t *img, const struct conv_record_options *o,
			 const struct conv_rec_user *u, json_t **out, struct rs_error *err)
{
	json_t *args = json_array(), *env = json_array(), *gids = json_array();
	const char *wd = json_string_value(json_object_get(img, "WorkingDir"));
	const char *cwd = o->cwd && *o->cwd ? o->cwd : wd && *wd ? wd : "/";
	cleanup_free char *abs = NULL;
	json_t *p = NULL;
	int rc = args && env && gids ? 0 : rs_err(err, -ENOMEM, "out of memory");
	if (rc == 0)
		rc = build_args(img, o, args, err);
	if (rc == 0)
		rc = build_env(img, o, u, env, err);
	for (size_t i = 0; rc == 0 && i < u->n_gids; i++)
		if (json_array_append_new(gids, json_integer(u->gids[i])) < 0)
			rc = rs_err(err, -ENOMEM, "out of memory");
	if (rc == 0 && asprintf(&abs, "%s%s", cwd[0] == '/' ? "" : "/", cwd) < 0) {
		abs = NULL;
		rc = rs_err(err, -ENOMEM, "out of memory");
	}
	json_t *capset = str_array(caps, sizeof(caps) / sizeof(caps[0]));
	if (rc == 0)
		p = json_pack("{s:b, s:{s:I, s:I, s:O}, s:O, s:O, s:s, s:{s:O, s:O, s:O}, "
			      "s:[{s:s, s:I, s:I}], s:b}",
			      "terminal", 0, "user", "uid", (json_int_t)u->uid, "gid",
			      (json_int_t)u->gid, "additionalGids", gids, "args", args, "env", env,
			      "cwd", abs, "capabilities", "bounding", capset, "effective", capset,
			      "permitted", capset, "rlimits", "type", "RLIMIT_NOFILE", "hard",
			      (json_int_t)1024, "soft", (json_int_t)1024, "noNewPrivileges", 1);
	if (rc == 0 && !p)
		rc = rs_err(err, -ENOMEM, "out of memory");
	json_decref(capset);
	json_decref(args);
	json_decref(env);
	json_decref(gids);
	*out = p;
	return rc;
}

int conv_rec_spec(json_t *img, const struct conv_record_options *o, const struct conv_rec_user *u,
		  const char *rootfs, json_t **spec, struct rs_error *err)
{
	if (img && !json_is_object(img))
		return rs_err(err, -EINVAL, "image config: \"config\" is not an object");
	json_t *proc = NULL;
	int rc = build_process(img, o, u, &proc, err);
	if (rc < 0)
		return rc;
	json_error_t je;
	json_t *mounts = json_loads(mounts_json, 0, &je);
	json_t *m = str_array(masked, sizeof(masked) / sizeof(masked[0]));
	json_t *ro = str_array(readonly, sizeof(readonly) / sizeof(readonly[0]));
	json_t *s = NULL;
	if (mounts && m && ro)
		s = json_pack("{s:s, s:O, s:{s:s, s:b}, s:s, s:O, s:{s:{s:[{s:b, s:s}]}, "
			      "s:[{s:s}, {s:s}, {s:s}, {s:s}, {s:s}], s:O, s:O}}",
			      "ociVersion", "1.0.2", "process", proc, "root", "path", rootfs,
			      "readonly", 0, "hostname", "stargz-optimize", "mounts", mounts,
			      "linux", "resources", "devices", "allow", 0, "access", "rwm",
			      "namespaces", "type", "pid", "type", "network", "type", "ipc", "type",
			      "uts", "type", "mount", "maskedPaths", m, "readonlyPaths", ro);
	json_decref(proc);
	json_decref(mounts);
	json_decref(m);
	json_decref(ro);
	if (!s)
		return rs_err(err, -ENOMEM, "out of memory");
	*spec = s;
	return 0;
}
