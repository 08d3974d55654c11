/* SPDX-License-Identifier: MIT */
/*
 * block.c - what every block back end checks before accepting an operation;
 * see block.h.
 */
#include "block.h"

#include <errno.h>
#include <limits.h>

int blk_check_io(const struct blk_backend *be, const struct blk_io *io, uint64_t *len)
{
	uint64_t n = 0;
	switch (io->op) {
	case BLK_OP_READ:
	case BLK_OP_WRITE:
		if (io->iovcnt == 0 || io->iovcnt > IOV_MAX)
			return -EINVAL;
		for (unsigned i = 0; i < io->iovcnt; i++) {
			if (io->iov[i].iov_len > UINT64_MAX - n)
				return -EINVAL;
			n += io->iov[i].iov_len;
		}
		break;
	case BLK_OP_DISCARD:
	case BLK_OP_WRITE_ZEROES:
		/* fallocate() takes a signed length */
		if (io->len == 0 || io->len > (uint64_t)INT64_MAX)
			return -EINVAL;
		n = io->len;
		break;
	case BLK_OP_FLUSH:
		break;
	default:
		return -EINVAL;
	}
	if (be->readonly && io->op != BLK_OP_READ && io->op != BLK_OP_FLUSH)
		return -EROFS;
	/* Never beyond the disk: a write past the end would grow a file. */
	if (io->op != BLK_OP_FLUSH && (io->offset > be->size || n > be->size - io->offset))
		return -EINVAL;
	*len = n;
	return 0;
}
