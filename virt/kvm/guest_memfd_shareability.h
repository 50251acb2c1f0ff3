/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * guest_memfd's shareability ranges: KVM_MEMORY_ATTRIBUTE_* bits per range of
 * a file's indices (guest_memfd_shareability.c).
 */
#ifndef __KVM_GUEST_MEMFD_SHAREABILITY_H__
#define __KVM_GUEST_MEMFD_SHAREABILITY_H__

#include <linux/rbtree.h>
#include <linux/rwsem.h>
#include <linux/spinlock.h>
#include <linux/types.h>

/* One uniform range: [first, last] holds attrs. */
struct gmem_range {
	union {
		struct rb_node node;
		struct list_head free;	/* erased: to reuse or free */
	};
	pgoff_t first, last;
	unsigned long attrs;
};

/* The ranges of one file, covering it, two neighbours never equal. */
struct gmem_shareability {
	rwlock_t lock;			/* readers: lookups */
	struct rb_root ranges;
	unsigned long nr_ranges;
	/* Held by writers, and by readers that need no update to run. */
	struct rw_semaphore *update_lock;
};

/* A change prepared by gmem_shareability_prepare(), applied or aborted. */
struct gmem_range_update {
	unsigned long attrs;
	/* The uniform range [first, last] the update creates. */
	pgoff_t first, last;
	struct gmem_range *spare[2];
};

int gmem_shareability_init(struct gmem_shareability *sh, pgoff_t nr_pages,
			   unsigned long attrs, struct rw_semaphore *update_lock);
void gmem_shareability_destroy(struct gmem_shareability *sh);
unsigned long gmem_shareability_get(struct gmem_shareability *sh,
				    pgoff_t index);
bool gmem_shareability_range_around(struct gmem_shareability *sh,
				    pgoff_t index, pgoff_t *last,
				    unsigned long *attrs);
int gmem_shareability_uniform_order(struct gmem_shareability *sh,
				    pgoff_t index, int order);
void gmem_shareability_count(struct gmem_shareability *sh,
			     unsigned long attrs, unsigned long *pages,
			     unsigned long *other_pages, unsigned long *ranges);
bool gmem_shareability_range_has(struct gmem_shareability *sh, pgoff_t start,
				 pgoff_t end, unsigned long attrs);
int gmem_shareability_prepare(struct gmem_shareability *sh,
			      struct gmem_range_update *u, pgoff_t start,
			      pgoff_t end, unsigned long attrs);
void gmem_shareability_abort(struct gmem_range_update *u);
void gmem_shareability_apply(struct gmem_shareability *sh,
			     struct gmem_range_update *u);

#endif /* __KVM_GUEST_MEMFD_SHAREABILITY_H__ */
