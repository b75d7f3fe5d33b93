// SPDX-License-Identifier: Apache-2.0
/* conv_record: image -> layers unpacked on an overlay mount -> user resolved
 * and runtime spec written -> fanotify mark -> `runc run` watched until it
 * exits, the period ends or a signal comes -> events drained -> everything
 * torn down (container, mount, work dir), on every path out. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>

#include "record_internal.h"

#define DEFAULT_PERIOD 10.0

struct recording {
	const struct conv_record_options *o;
	struct conv_image *im;
	struct conv_doc man;
	json_t *cfg; /* the image config */
	struct conv_rec_rootfs fs;
	struct conv_rec_user user;
	struct conv_rec_fan fan;
	struct conv_rec_runc runc;
	char *bundle;
};

void conv_rec_stop_signals(sigset_t *s)
{
	sigemptyset(s);
	sigaddset(s, SIGINT);
	sigaddset(s, SIGTERM);
	sigaddset(s, SIGHUP);
}

bool conv_rec_interrupted(void)
{
	sigset_t pending, stop;
	if (sigpending(&pending) < 0)
		return false;
	conv_rec_stop_signals(&stop);
	sigandset(&pending, &pending, &stop);
	return !sigisemptyset(&pending);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The platform's manifest and its config. */
static int load_image(struct recording *r, const char *src, struct rs_error *err)
{
	int rc = conv_image_open(src, r->o->reg, false, &r->im, err);
	if (rc == 0)
		rc = conv_image_root(r->im, &r->man, err);
	if (rc == 0 && conv_mt_is_index(r->man.media_type)) {
		struct reg_platform want = {0};
		cleanup_free char *want_storage = NULL;
		json_t *sel = NULL;
		const char *mt, *dg;
		if (r->o->platform)
			rc = reg_platform_parse(r->o->platform, &want, &want_storage, err);
		if (rc == 0)
			rc = conv_index_select(r->im->name, &r->man, &want, &sel, err);
		if (rc == 0 && json_array_size(sel) == 0)
			rc = rs_err(err, -ENOENT, "%s: no image for the platform", r->im->name);
		if (rc == 0)
			rc = conv_desc_get(json_array_get(sel, 0), &mt, &dg, NULL, "index entry",
					   err);
		struct conv_doc m = {0};
		if (rc == 0)
			rc = conv_image_manifest(r->im, dg, mt, &m, err);
		json_decref(sel);
		conv_doc_free(&r->man);
		r->man = m;
	}
	if (rc == 0 && !conv_mt_is_manifest(r->man.media_type))
		rc = rs_err(err, -EINVAL, "%s: not an image manifest", r->im->name);
	const char *mt, *dg;
	int64_t size;
	struct rs_buf raw = {0};
	if (rc == 0)
		rc = conv_desc_get(json_object_get(r->man.json, "config"), &mt, &dg, &size,
				   "config", err);
	if (rc == 0)
		rc = conv_image_blob_mem(r->im, dg, size, CONV_MAX_CONFIG, &raw, err);
	if (rc == 0) {
		json_error_t je;
		r->cfg = json_loadb((const char *)raw.data, raw.len, JSON_REJECT_DUPLICATES, &je);
		if (!json_is_object(r->cfg))
			rc = rs_err(err, -EINVAL, "config %s: not a JSON object", dg);
	}
	rs_buf_free(&raw);
	return rc;
}

static int interrupted(struct rs_error *err)
{
	return conv_rec_interrupted() ? rs_err(err, -EINTR, "interrupted") : 0;
}

/* bundle/config.json and the runc state dir. */
static int write_bundle(struct recording *r, json_t *img, struct rs_error *err)
{
	if (asprintf(&r->bundle, "%s/bundle", r->fs.dir) < 0 ||
	    asprintf(&r->runc.state, "%s/runc", r->fs.dir) < 0) {
		r->bundle = NULL;
		return rs_err(err, -ENOMEM, "out of memory");
	}
	if (mkdir(r->bundle, 0700) < 0 || mkdir(r->runc.state, 0700) < 0)
		return rs_err(err, -errno, "%s: %s", r->fs.dir, strerror(errno));
	json_t *spec = NULL;
	int rc = conv_rec_spec(img, r->o, &r->user, r->fs.merged, &spec, err);
	if (rc < 0)
		return rc;
	cleanup_free char *path = NULL;
	if (asprintf(&path, "%s/config.json", r->bundle) < 0)
		path = NULL;
	if (!path || json_dump_file(spec, path, JSON_INDENT(2)) < 0)
		rc = rs_err(err, -EIO, "%s/config.json: cannot write", r->bundle);
	json_decref(spec);
	return rc;
}

/* Watches the workload until it exits, the period ends or a signal comes. */
static int watch(struct recording *r, struct conv_record_result *res, struct rs_error *err)
{
	sigset_t sigs;
	conv_rec_stop_signals(&sigs);
	cleanup_fd int sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
	double period = r->o->period > 0 ? r->o->period : DEFAULT_PERIOD;
	int out = r->o->output_fd > 0 ? r->o->output_fd : STDERR_FILENO;
	int rc = conv_rec_runc_start(&r->runc, r->bundle, out, err);
	if (rc < 0)
		return rc;
	double t0 = now();
	bool exited = false;
	int status = -1;
	while (rc == 0) {
		double left = t0 + period - now();
		if (left <= 0) {
			res->timed_out = true;
			break;
		}
		struct pollfd p[3] = {
		    {.fd = r->fan.fd, .events = POLLIN},
		    {.fd = r->runc.pidfd, .events = POLLIN},
		    {.fd = sfd, .events = POLLIN},
		};
		if (poll(p, 3, (int)(left * 1000) + 1) < 0 && errno != EINTR)
			rc = rs_err(err, -errno, "poll: %s", strerror(errno));
		if (rc == 0 && p[0].revents)
			rc = conv_rec_fan_read(&r->fan, err);
		if (conv_rec_runc_reap(&r->runc, &status)) {
			exited = true;
			break;
		}
		if (rc == 0 && (p[2].revents || conv_rec_interrupted()))
			rc = rs_err(err, -EINTR, "interrupted");
	}
	res->seconds = now() - t0;
	if (!exited)
		conv_rec_runc_stop(&r->runc, &status);
	res->exit_status = status;
	if (rc == 0)
		rc = conv_rec_fan_read(&r->fan, err);
	conv_rec_fan_stop(&r->fan);
	return rc;
}

int conv_record(const char *src, const struct conv_record_options *o,
		struct conv_record_result *res, struct rs_error *err)
{
	static const struct conv_record_options dflt = {0};
	if (!o)
		o = &dflt;
	memset(res, 0, sizeof(*res));
	res->exit_status = -1;
	struct recording r = {.o = o, .fan = {.fd = -1}, .runc = {.pidfd = -1}};
	r.runc.runc = o->runc && *o->runc ? o->runc : "runc";
	if (geteuid() != 0)
		return rs_err(err, -EPERM,
			      "recording a workload needs root (runc, overlayfs "
			      "and fanotify)");
	int rc = load_image(&r, src, err);
	json_t *img = json_object_get(r.cfg, "config");
	const char *user = json_string_value(json_object_get(img, "User"));
	if (rc == 0)
		rc = conv_rec_rootfs_init(&r.fs, o->tmp_dir, err);
	if (rc == 0)
		rc = conv_rec_rootfs_build(&r.fs, r.im, r.man.json, err);
	if (rc == 0 && r.fs.fs)
		rc = conv_rec_evict(r.fs.fs, err);
	if (rc == 0)
		rc = interrupted(err);
	if (rc == 0)
		rc = conv_rec_user_resolve(r.fs.merged, user, &r.user, err);
	if (rc == 0)
		rc = write_bundle(&r, img, err);
	if (rc == 0)
		rc = conv_rec_fan_start(&r.fan, r.fs.merged, err);
	if (rc == 0)
		rc = interrupted(err);
	if (rc == 0)
		rc = watch(&r, res, err);
	if (rc == 0) {
		res->paths = conv_strset_steal(&r.fan.paths, &res->n_paths);
		res->incomplete = r.fan.incomplete;
		if (r.fs.fs)
			rc = conv_rec_touched(r.fs.merged, res, err);
	}
	if (r.runc.pid > 0) {
		int st;
		conv_rec_runc_stop(&r.runc, &st);
	}
	conv_rec_fan_free(&r.fan);
	conv_rec_rootfs_cleanup(&r.fs);
	conv_rec_user_free(&r.user);
	free(r.bundle);
	free(r.runc.state);
	json_decref(r.cfg);
	conv_doc_free(&r.man);
	conv_image_free(r.im);
	if (rc < 0)
		conv_record_result_free(res);
	return rc;
}
