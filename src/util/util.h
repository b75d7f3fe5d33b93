/* SPDX-License-Identifier: Apache-2.0 */
/* util: errors, cleanup helpers, buffers, sha256, paths, logging. */
#ifndef RS_UTIL_H
#define RS_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

/* ---- errors ---------------------------------------------------------- */

#define RS_ERROR_MSG_MAX 1024

/* An error travelling up the stack: a negative errno-style code and a message
 * a user can act on. Callers add context with rs_error_prefix(). */
struct rs_error {
	int code;
	char msg[RS_ERROR_MSG_MAX];
};

/* Fills err (if non-NULL) and returns code, so callers can `return rs_err(...)`. */
int rs_err(struct rs_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prepends "context: " to an existing message. Returns nothing, so that a
 * caller returns the code it holds: err may be NULL (the caller does not want
 * messages), and then there is nothing to prefix and no code to give back. */
void rs_error_prefix(struct rs_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void rs_error_clear(struct rs_error *err);

/* ---- cleanup --------------------------------------------------------- */

#define rs_cleanup(f) __attribute__((cleanup(f)))

static inline void rs_freep(void *p)
{
	free(*(void **)p);
}
static inline void rs_closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}
#define cleanup_free rs_cleanup(rs_freep)
#define cleanup_fd rs_cleanup(rs_closep)

static inline void *rs_steal_ptr(void *pp)
{
	void **p = (void **)pp;
	void *v = *p;
	*p = NULL;
	return v;
}
#define steal_pointer(pp) rs_steal_ptr(pp)

static inline int rs_steal_fd(int *fd)
{
	int v = *fd;
	*fd = -1;
	return v;
}

/* ---- checked arithmetic ---------------------------------------------- */

#define rs_add_overflow(a, b, res) __builtin_add_overflow(a, b, res)
#define rs_mul_overflow(a, b, res) __builtin_mul_overflow(a, b, res)

/* ---- growable byte buffer -------------------------------------------- */

struct rs_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

int rs_buf_reserve(struct rs_buf *b, size_t extra);
int rs_buf_append(struct rs_buf *b, const void *data, size_t len);
int rs_buf_printf(struct rs_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rs_buf_free(struct rs_buf *b);
static inline void rs_buf_reset(struct rs_buf *b)
{
	b->len = 0;
}

/* ---- sha256 (OpenSSL) ------------------------------------------------ */

#define RS_SHA256_LEN 32
/* "sha256:" + 64 hex + NUL */
#define RS_DIGEST_STR_LEN 72

struct rs_sha256 {
	void *ctx; /* EVP_MD_CTX */
};

int rs_sha256_init(struct rs_sha256 *s);
void rs_sha256_update(struct rs_sha256 *s, const void *data, size_t len);
void rs_sha256_final(struct rs_sha256 *s, uint8_t out[RS_SHA256_LEN]);
void rs_sha256_free(struct rs_sha256 *s);
void rs_sha256(const void *data, size_t len, uint8_t out[RS_SHA256_LEN]);
/* Formats "sha256:<hex>" into out (RS_DIGEST_STR_LEN bytes). */
void rs_digest_format(const uint8_t sum[RS_SHA256_LEN], char out[RS_DIGEST_STR_LEN]);
/* Parses "sha256:<64 lowercase hex>"; -EINVAL otherwise. */
int rs_digest_parse(const char *s, size_t len, uint8_t out[RS_SHA256_LEN]);

/* ---- paths ----------------------------------------------------------- */

/* Normalises a layer-relative path: drops "./" and "." components, repeated
 * and trailing slashes. The root is "". Fails with -EINVAL and a reason in
 * *why for absolute names and any ".." component. out has at least len+1 bytes. */
int rs_path_clean(const char *in, size_t len, char *out, size_t *out_len, const char **why);

/* ---- misc ------------------------------------------------------------ */

/* Base64 (standard alphabet, padded) decode; returns decoded length or -EINVAL. */
ssize_t rs_base64_decode(const char *in, size_t len, uint8_t *out, size_t out_cap);
/* Base64 encode; out must hold 4*((len+2)/3)+1 bytes. Returns length written. */
size_t rs_base64_encode(const uint8_t *in, size_t len, char *out);

/* RFC 3339 "YYYY-MM-DDTHH:MM:SS[.frac](Z|±hh:mm)" to seconds since the epoch. */
int rs_rfc3339_parse(const char *s, size_t len, int64_t *sec, uint32_t *nsec);
/* Formats seconds as "YYYY-MM-DDTHH:MM:SSZ" (the form the reference writes). */
void rs_rfc3339_format(int64_t sec, char out[32]);

/* Number of online CPUs, at least 1. */
int rs_cpu_count(void);

/* Milliseconds of CLOCK_MONOTONIC. */
int64_t rs_monotonic_ms(void);

/* s[0..len) as a decimal number of 1 to 18 digits and nothing else; -1 when
 * it is not one (sign, space, other characters, empty, too long). */
int64_t rs_parse_decimal(const char *s, size_t len);

/* ---- logging --------------------------------------------------------- */

enum rs_log_level { RS_LOG_DEBUG, RS_LOG_INFO, RS_LOG_WARN, RS_LOG_ERROR };
void rs_log_set_level(enum rs_log_level lvl);
/* "debug", "info", "warn" or "error": 0 and *out, else -EINVAL. */
int rs_log_level_parse(const char *s, enum rs_log_level *out);
void rs_log_set_json(bool json);
void rs_log(enum rs_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
