/* One rule for everything that extracts with libarchive's disk writer (the
 * StreamIn helper, image layers, `cloche cp`). Header-only: each user links
 * libarchive itself. */
#pragma once

#include <archive.h>
#include <stdbool.h>

/* Whether r, from archive_write_data_block() on a disk writer, is a failure.
 * libarchive reports a failed write(2) (ENOSPC, EDQUOT, EIO) as a mere
 * warning, and its finish_entry then extends the file to its full length with
 * zeros: a warning with an errno is a failure. One without (data for an entry
 * that takes none, such as a hard link) is not. */
static inline bool archive_data_write_failed(struct archive *out, la_ssize_t r)
{
    return r < ARCHIVE_WARN || (r < ARCHIVE_OK && archive_errno(out) > 0);
}
