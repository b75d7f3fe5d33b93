// SPDX-License-Identifier: Apache-2.0
/* fdstore: the table of stored fds by name. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "fdstore_internal.h"

ssize_t fdt_find(const struct fdt *t, const char *name)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->v[i].name, name) == 0)
			return (ssize_t)i;
	return -1;
}

int fdt_put(struct fdt *t, const char *name, int fd)
{
	size_t len = strlen(name);
	if (len > FDSTORE_NAME_MAX) {
		if (fd >= 0)
			close(fd);
		return -EINVAL;
	}
	ssize_t i = fdt_find(t, name);
	if (i >= 0) {
		if (t->v[i].fd >= 0)
			close(t->v[i].fd);
		t->v[i].fd = fd;
		return 0;
	}
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		struct fdstore_entry *v = reallocarray(t->v, cap, sizeof(*v));
		if (!v) {
			if (fd >= 0)
				close(fd);
			return -ENOMEM;
		}
		t->v = v;
		t->cap = cap;
	}
	memcpy(t->v[t->n].name, name, len + 1);
	t->v[t->n].fd = fd;
	t->n++;
	return 0;
}

int fdt_remove(struct fdt *t, const char *name)
{
	ssize_t i = fdt_find(t, name);
	if (i < 0)
		return -ENOENT;
	if (t->v[i].fd >= 0)
		close(t->v[i].fd);
	t->v[i] = t->v[t->n - 1];
	t->n--;
	return 0;
}

void fdt_clear(struct fdt *t)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->v[i].fd >= 0)
			close(t->v[i].fd);
	free(t->v);
	t->v = NULL;
	t->n = t->cap = 0;
}
