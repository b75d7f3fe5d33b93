/* SPDX-License-Identifier: Apache-2.0 */
/* The fetch queues: one FIFO per priority. Plain lists with no lock of
 * their own (the runtime's lock guards them), apart from the fetch threads
 * so that their order, promotion and cancelling can be tested alone. */
#include "layerfs_internal.h"

void lfs_queue_push(struct lfs_job **head, struct lfs_job **tail, struct lfs_job *j, bool front)
{
	if (front) {
		j->next = head[j->prio];
		head[j->prio] = j;
		if (!tail[j->prio])
			tail[j->prio] = j;
		return;
	}
	j->next = NULL;
	if (tail[j->prio])
		tail[j->prio]->next = j;
	else
		head[j->prio] = j;
	tail[j->prio] = j;
}

struct lfs_job *lfs_queue_pop(struct lfs_job **head, struct lfs_job **tail, bool low_allowed)
{
	for (int p = 0; p < LFS_NPRIO; p++) {
		struct lfs_job *j = head[p];
		if (!j)
			continue;
		if (p >= LFS_PRIO_PREFETCH && !low_allowed)
			return NULL;
		head[p] = j->next;
		if (!j->next)
			tail[p] = NULL;
		j->next = NULL;
		return j;
	}
	return NULL;
}

bool lfs_job_has(const struct lfs_job *j, uint32_t chunk)
{
	for (uint32_t r = 0; r < j->nruns; r++)
		if (chunk >= j->runs[r].first && chunk - j->runs[r].first < j->runs[r].count)
			return true;
	return false;
}

bool lfs_queue_promote(struct lfs_job **head, struct lfs_job **tail, const struct lfs_layer *l,
		       uint32_t chunk)
{
	for (int p = LFS_PRIO_READAHEAD; p < LFS_NPRIO; p++) {
		struct lfs_job *prev = NULL;
		for (struct lfs_job *j = head[p]; j; prev = j, j = j->next) {
			if (j->layer != l || !lfs_job_has(j, chunk))
				continue;
			if (prev)
				prev->next = j->next;
			else
				head[p] = j->next;
			if (tail[p] == j)
				tail[p] = prev;
			j->prio = LFS_PRIO_ONDEMAND;
			lfs_queue_push(head, tail, j, true);
			return true;
		}
	}
	return false;
}

struct lfs_job *lfs_queue_take_layer(struct lfs_job **head, struct lfs_job **tail,
				     const struct lfs_layer *l)
{
	struct lfs_job *taken = NULL, **end = &taken;
	for (int p = 0; p < LFS_NPRIO; p++) {
		struct lfs_job **pp = &head[p], *last = NULL;
		while (*pp) {
			struct lfs_job *j = *pp;
			if (j->layer == l) {
				*pp = j->next;
				j->next = NULL;
				*end = j;
				end = &j->next;
			} else {
				last = j;
				pp = &j->next;
			}
		}
		tail[p] = last;
	}
	return taken;
}
