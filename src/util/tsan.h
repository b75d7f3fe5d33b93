// SPDX-License-Identifier: Apache-2.0
/* Happens-before edges for ThreadSanitizer across libraries it cannot see
 * into. Debian's gRPC is not instrumented, so the ordering a completion
 * queue gives (everything before a batch starts happens before its tag comes
 * back) is invisible to TSan and every hand-over of a call between threads
 * reads as a race. rs_hb_release(tag) before handing tag to such a library
 * and rs_hb_acquire(tag) when it comes back state that ordering; both are
 * no-ops in other builds. */
#ifndef RS_UTIL_TSAN_H
#define RS_UTIL_TSAN_H

#if defined(__SANITIZE_THREAD__)
#define RS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RS_TSAN 1
#endif
#endif

#ifdef RS_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
static inline void rs_hb_release(void *addr)
{
	__tsan_release(addr);
}
static inline void rs_hb_acquire(void *addr)
{
	__tsan_acquire(addr);
}
#else
static inline void rs_hb_release(void *addr)
{
	(void)addr;
}
static inline void rs_hb_acquire(void *addr)
{
	(void)addr;
}
#endif

#endif
