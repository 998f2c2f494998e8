/* Progress of transfers: one bar per item (a layer, an upload) redrawn in place
 * when stdout is a terminal, one plain line per finished item when it is not. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define PROGRESS_ITEMS_MAX 256 /* bars drawn at most; more are counted only */

typedef struct ProgressItem {
    char *id;
    uint64_t done, total;
} ProgressItem;

struct Progress {
    bool tty;
    ProgressItem items[PROGRESS_ITEMS_MAX];
    size_t n, drawn;
};

Progress *progress_new(void)
{
    Progress *p = calloc(1, sizeof(Progress));
    if (p)
        p->tty = !cli_json && isatty(STDOUT_FILENO);
    return p;
}

bool progress_is_tty(const Progress *p)
{
    return p && p->tty;
}

void progress_free(Progress *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        free(p->items[i].id);
    free(p);
}

static const char *short_id(const char *d)
{
    return strncmp(d, "sha256:", 7) == 0 ? d + 7 : d;
}

static void draw(Progress *p)
{
    if (p->drawn)
        printf("\x1b[%zuA", p->drawn); /* back to the first bar */
    for (size_t i = 0; i < p->n; i++) {
        ProgressItem *l = &p->items[i];
        char a[32], b[32], bar[31];
        int width = 30, fill = l->total ? (int)(l->done * (uint64_t)width / l->total) : 0;
        if (fill > width)
            fill = width;
        memset(bar, '=', (size_t)fill);
        memset(bar + fill, ' ', (size_t)(width - fill));
        if (fill > 0 && fill < width)
            bar[fill - 1] = '>';
        bar[width] = '\0';
        printf("\r\x1b[K%-12.12s  [%s]  %s / %s%s\n", short_id(l->id), bar,
               fmt_bytes(l->done, a, sizeof(a)), l->total ? fmt_bytes(l->total, b, sizeof(b)) : "?",
               l->total && l->done >= l->total ? "  done" : "");
    }
    p->drawn = p->n;
    fflush(stdout);
}

void progress_update(Progress *p, const char *id, uint64_t done, uint64_t total)
{
    if (!p || !id)
        return;
    size_t i;
    for (i = 0; i < p->n; i++)
        if (strcmp(p->items[i].id, id) == 0)
            break;
    if (i == p->n) {
        if (p->n == PROGRESS_ITEMS_MAX || !(p->items[i].id = strdup(id)))
            return;
        p->n++;
    }
    ProgressItem *l = &p->items[i];
    bool was_done = l->total && l->done >= l->total;
    l->done = done;
    l->total = total;
    if (p->tty) {
        draw(p);
    } else if (!cli_json && total && done >= total && !was_done) {
        char a[32];
        printf("%s: %s\n", id, fmt_bytes(total, a, sizeof(a)));
        fflush(stdout);
    }
}

void progress_forget(Progress *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        free(p->items[i].id);
    p->n = p->drawn = 0;
}
