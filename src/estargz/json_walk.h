/* SPDX-License-Identifier: Apache-2.0 */
/* The C face of the simdjson shim (toc_parse_simd.cpp): plain C, so that the
 * C++ side needs nothing else from the project. */
#ifndef ESGZ_JSON_WALK_H
#define ESGZ_JSON_WALK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes past the end of the JSON that must be readable (SIMDJSON_PADDING). */
#define ESGZ_JSON_PADDING 64

/* The events of a streaming parser, in document order. Strings and keys are
 * unescaped and not NUL-terminated; numbers are their JSON text. Each returns
 * non-zero to go on, 0 to stop the walk. */
struct esgz_json_events {
	int (*null)(void *ctx);
	int (*boolean)(void *ctx, int b);
	int (*number)(void *ctx, const char *s, size_t n);
	int (*string)(void *ctx, const unsigned char *s, size_t n);
	int (*start_map)(void *ctx);
	int (*map_key)(void *ctx, const unsigned char *k, size_t n);
	int (*end_map)(void *ctx);
	int (*start_array)(void *ctx);
	int (*end_array)(void *ctx);
};

/* Why a walk failed on invalid JSON. */
struct esgz_json_error {
	char msg[160];
	size_t offset; /* about where, in bytes from the start */
};

/* Walks every value of json[0, len), which must stay readable up to len +
 * ESGZ_JSON_PADDING. Returns 0 when done, 1 when an event stopped it, -1 on
 * invalid JSON (jerr filled) and -2 when out of memory. */
int esgz_json_walk(const uint8_t *json, size_t len, const struct esgz_json_events *ev, void *ctx,
		   struct esgz_json_error *jerr);

#ifdef __cplusplus
}
#endif

#endif
