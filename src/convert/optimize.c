// SPDX-License-Identifier: Apache-2.0
/* conv_optimize: the record list (from a run of the workload, or from a saved
 * file), saved when asked, then conv_convert with those files first. */
#include <errno.h>
#include <string.h>

#include "convert_internal.h"

int conv_optimize(const char *src, const char *dst, const struct conv_optimize_options *o,
		  const struct conv_progress *progress, struct conv_optimize_result *res,
		  struct rs_error *err)
{
	memset(res, 0, sizeof(*res));
	struct conv_record_result *rec = &res->record;
	int rc;
	if (o->record_in) {
		rc = conv_record_list_read(o->record_in, rec, err);
		rec->exit_status = 0;
	} else {
		rc = conv_record(src, &o->record, rec, err);
	}
	if (rc < 0)
		return rc;
	if (o->on_recorded)
		o->on_recorded(o->ctx, rec);
	if (o->record_out && (rc = conv_record_list_write(o->record_out, rec, err)) < 0)
		return rc;
	struct conv_options co = o->convert;
	co.prioritized = (const char *const *)rec->paths;
	co.n_prioritized = rec->n_paths;
	co.touched = rec->touched;
	co.n_touched = rec->n_touched;
	if (!co.platform)
		co.platform = o->record.platform;
	if (!co.reg)
		co.reg = o->record.reg;
	co.all_platforms = false;
	return conv_convert(src, dst, &co, progress, &res->convert, err);
}
