// SPDX-License-Identifier: Apache-2.0
/* Fuzzes the builder's tar input: any tar (or garbage) must give a blob or an error. */
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "estargz/estargz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int in = memfd_create("fuzz-in", MFD_CLOEXEC);
	int out = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (in < 0 || out < 0)
		__builtin_trap();
	if (size && write(in, data, size) != (ssize_t)size)
		__builtin_trap();
	lseek(in, 0, SEEK_SET);
	struct esgz_build_opts o = {.chunk_size = 4096, .level = 1, .threads = 1};
	struct esgz_build_result res;
	struct rs_error err;
	(void)esgz_build(in, out, &o, &res, &err);
	close(in);
	close(out);
	return 0;
}
