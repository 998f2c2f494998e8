/* The seccomp program as ranges, its evaluation in user space, and the check
 * that it decides as libseccomp's (include/cloche/seccomp-compact.h). */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <linux/audit.h>

#include "cloche/cleanup.h"
#include "cloche/seccomp-compact.h"

#define X32_BIT 0x40000000u
#define MAX_INSNS 4096
#define MAX_LABELS 1024
#define NR_SPAN 2048 /* numbers checked per ABI, from its first (plus beyond: see below) */

#define OFF_NR ((uint32_t)offsetof(struct seccomp_data, nr))
#define OFF_ARCH ((uint32_t)offsetof(struct seccomp_data, arch))
#define OFF_ARG0_LO ((uint32_t)offsetof(struct seccomp_data, args))
#define OFF_ARG0_HI (OFF_ARG0_LO + 4)

/* ---- a small assembler: jumps to labels, resolved at the end ---- */

enum { NEXT = -1 }; /* a conditional jump's "no jump" */

typedef struct Asm {
    struct sock_filter insns[MAX_INSNS];
    int jt[MAX_INSNS], jf[MAX_INSNS]; /* label ids (or NEXT) of conditional jumps */
    int ja[MAX_INSNS];                /* label id of an unconditional jump, else -1 */
    int label_at[MAX_LABELS];         /* instruction index, -1 while unplaced */
    size_t n, n_labels;
    bool overflow;
} Asm;

static int asm_label(Asm *a)
{
    if (a->n_labels == MAX_LABELS) {
        a->overflow = true;
        return 0;
    }
    a->label_at[a->n_labels] = -1;
    return (int)a->n_labels++;
}

static void asm_place(Asm *a, int label)
{
    a->label_at[label] = (int)a->n;
}

static void asm_emit(Asm *a, uint16_t code, uint32_t k, int jt, int jf, int ja)
{
    if (a->n == MAX_INSNS) {
        a->overflow = true;
        return;
    }
    a->insns[a->n] = (struct sock_filter){.code = code, .k = k};
    a->jt[a->n] = jt;
    a->jf[a->n] = jf;
    a->ja[a->n] = ja;
    a->n++;
}

static void asm_load(Asm *a, uint32_t offset)
{
    asm_emit(a, BPF_LD | BPF_W | BPF_ABS, offset, NEXT, NEXT, -1);
}

static void asm_jump_if(Asm *a, uint16_t op, uint32_t k, int jt, int jf)
{
    asm_emit(a, BPF_JMP | op | BPF_K, k, jt, jf, -1);
}

static void asm_jump(Asm *a, int label)
{
    asm_emit(a, BPF_JMP | BPF_JA, 0, NEXT, NEXT, label);
}

static void asm_ret(Asm *a, uint32_t action)
{
    asm_emit(a, BPF_RET | BPF_K, action, NEXT, NEXT, -1);
}

/* Offsets from the labels; -E2BIG where a conditional jump is beyond 255. */
static int asm_resolve(Asm *a)
{
    if (a->overflow)
        return -E2BIG;
    for (size_t i = 0; i < a->n; i++) {
        struct sock_filter *f = &a->insns[i];
        if (a->ja[i] >= 0) {
            int to = a->label_at[a->ja[i]];
            if (to <= (int)i)
                return -EINVAL;
            f->k = (uint32_t)(to - (int)i - 1);
            continue;
        }
        if (BPF_CLASS(f->code) != BPF_JMP)
            continue;
        int offsets[2];
        int labels[2] = {a->jt[i], a->jf[i]};
        for (int j = 0; j < 2; j++) {
            int to = labels[j] == NEXT ? (int)i + 1 : a->label_at[labels[j]];
            if (to <= (int)i)
                return -EINVAL;
            offsets[j] = to - (int)i - 1;
            if (offsets[j] > 255)
                return -E2BIG;
        }
        f->jt = (uint8_t)offsets[0];
        f->jf = (uint8_t)offsets[1];
    }
    return 0;
}

/* ---- the program ---- */

static int compare_u32(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return a < b ? -1 : a > b;
}

/* The boundaries between refused and allowed runs of the sorted, distinct
 * numbers: segment 0 (below boundary 0) is refused, segment 1 allowed, and so
 * on alternately. Returns how many. */
static size_t boundaries(const uint32_t *nrs, size_t n, uint32_t *out)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || nrs[i] != nrs[i - 1] + 1)
            out[m++] = nrs[i]; /* a run starts */
        if (i + 1 == n || nrs[i + 1] != nrs[i] + 1) {
            if (nrs[i] == UINT32_MAX)
                break; /* the run reaches the top: no end boundary */
            out[m++] = nrs[i] + 1;
        }
    }
    return m;
}

/* Segments lo..hi (of the boundaries b) by binary search; leaves are the
 * allow and refuse labels. */
static void emit_search(Asm *a, const uint32_t *b, size_t lo, size_t hi, int allow, int refuse)
{
    size_t mid = (lo + hi + 1) / 2; /* nr >= b[mid - 1]: segments mid..hi */
    int right = mid == hi ? (hi % 2 ? allow : refuse) : asm_label(a);
    int left = lo == mid - 1 ? ((mid - 1) % 2 ? allow : refuse) : NEXT;
    asm_jump_if(a, BPF_JGE, b[mid - 1], right, left);
    if (left == NEXT)
        emit_search(a, b, lo, mid - 1, allow, refuse);
    if (mid != hi) {
        asm_place(a, right);
        emit_search(a, b, mid, hi, allow, refuse);
    }
}

/* One ABI's part, with nr loaded: the argument tests, then the search. */
static int emit_abi(Asm *a, const SeccompPolicy *p, const SeccompAbi *abi)
{
    int allow = asm_label(a), refuse = asm_label(a), enosys = asm_label(a);
    int blk_clone = asm_label(a), blk_unshare = asm_label(a), blk_pers = asm_label(a),
        blk_socket = asm_label(a);
    const struct {
        int nr, label;
    } special[] = {{abi->clone, blk_clone},
                   {abi->unshare, blk_unshare},
                   {abi->clone3, enosys},
                   {abi->personality, blk_pers},
                   {abi->socket, blk_socket}};
    for (size_t i = 0; i < sizeof(special) / sizeof(special[0]); i++)
        if (special[i].nr >= 0)
            asm_jump_if(a, BPF_JEQ, abi->nr_bit | (uint32_t)special[i].nr, special[i].label, NEXT);

    _cleanup_free_ uint32_t *nrs = calloc(abi->n_allowed + 1, sizeof(uint32_t));
    _cleanup_free_ uint32_t *b = calloc(2 * abi->n_allowed + 2, sizeof(uint32_t));
    if (!nrs || !b)
        return -ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < abi->n_allowed; i++) {
        int nr = abi->allowed[i];
        if (nr < 0 || nr == abi->clone || nr == abi->unshare || nr == abi->clone3 ||
            nr == abi->personality || nr == abi->socket)
            return -EINVAL; /* the caller leaves out what is not a number of this ABI */
        nrs[n++] = abi->nr_bit | (uint32_t)nr;
    }
    qsort(nrs, n, sizeof(*nrs), compare_u32);
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++)
        if (distinct == 0 || nrs[i] != nrs[distinct - 1])
            nrs[distinct++] = nrs[i];
    size_t m = boundaries(nrs, distinct, b);
    if (m == 0)
        asm_jump(a, refuse);
    else
        emit_search(a, b, 0, m, allow, refuse);

    /* clone, unshare: no namespace flag in the low word (the flags are all
     * there, so a high word can hold none of them). */
    int blocks[] = {blk_clone, blk_unshare};
    for (size_t i = 0; i < 2; i++) {
        asm_place(a, blocks[i]);
        asm_load(a, OFF_ARG0_LO);
        asm_jump_if(a, BPF_JSET, p->namespace_flags, refuse, allow);
    }
    /* personality: one of the personas (a 64-bit ABI: high word zero). */
    asm_place(a, blk_pers);
    if (abi->wide_args) {
        asm_load(a, OFF_ARG0_HI);
        asm_jump_if(a, BPF_JEQ, 0, NEXT, refuse);
    }
    asm_load(a, OFF_ARG0_LO);
    for (size_t i = 0; i < p->n_personas; i++)
        asm_jump_if(a, BPF_JEQ, p->personas[i], allow, NEXT);
    asm_jump(a, refuse);
    /* socket: any family but the refused one. */
    asm_place(a, blk_socket);
    if (abi->wide_args) {
        asm_load(a, OFF_ARG0_HI);
        asm_jump_if(a, BPF_JEQ, 0, NEXT, allow);
    }
    asm_load(a, OFF_ARG0_LO);
    asm_jump_if(a, BPF_JEQ, p->refused_family, refuse, allow);

    asm_place(a, allow);
    asm_ret(a, SECCOMP_RET_ALLOW);
    asm_place(a, refuse);
    asm_ret(a, p->default_action);
    asm_place(a, enosys);
    asm_ret(a, SECCOMP_RET_ERRNO | ENOSYS);
    return 0;
}

int seccomp_compact_build(const SeccompPolicy *p, struct sock_fprog *ret)
{
    if (p->n_abis == 0 || p->n_abis > 3)
        return -EINVAL;
    _cleanup_free_ Asm *a = calloc(1, sizeof(Asm));
    if (!a)
        return -ENOMEM;
    /* Which arch each ABI belongs to: x32 (nr_bit) goes with the x86_64 before it. */
    int section[3];
    const SeccompAbi *x32 = NULL;
    asm_load(a, OFF_ARCH);
    for (size_t i = 0; i < p->n_abis; i++) {
        if (p->abis[i].nr_bit) {
            if (p->abis[i].arch != AUDIT_ARCH_X86_64 || p->abis[i].nr_bit != X32_BIT || x32)
                return -EINVAL;
            x32 = &p->abis[i];
            section[i] = -1;
            continue;
        }
        section[i] = asm_label(a);
        asm_jump_if(a, BPF_JEQ, p->abis[i].arch, NEXT, NEXT);
        a->jf[a->n - 1] = asm_label(a); /* the next arch's test */
        int next_test = a->jf[a->n - 1];
        asm_jump(a, section[i]);
        asm_place(a, next_test);
    }
    asm_ret(a, p->badarch_action);

    for (size_t i = 0; i < p->n_abis; i++) {
        if (section[i] < 0)
            continue;
        const SeccompAbi *abi = &p->abis[i];
        asm_place(a, section[i]);
        asm_load(a, OFF_NR);
        int x32_part = -1;
        if (abi->arch == AUDIT_ARCH_X86_64) {
            /* -1 (a "no call" some tracers use) has the bit, but is no x32 call. */
            int main_part = asm_label(a);
            asm_jump_if(a, BPF_JEQ, UINT32_MAX, main_part, NEXT);
            /* Numbers with the x32 bit: x32's part, or the bad-arch answer. */
            asm_jump_if(a, BPF_JGE, X32_BIT, NEXT, main_part);
            if (x32) {
                x32_part = asm_label(a);
                asm_jump(a, x32_part);
            } else {
                asm_ret(a, p->badarch_action);
            }
            asm_place(a, main_part);
        }
        int r = emit_abi(a, p, abi);
        if (r < 0)
            return r;
        if (x32_part >= 0) {
            asm_place(a, x32_part);
            if ((r = emit_abi(a, p, x32)) < 0)
                return r;
        }
    }
    int r = asm_resolve(a);
    if (r < 0)
        return r;
    struct sock_filter *insns = malloc(a->n * sizeof(*insns));
    if (!insns)
        return -ENOMEM;
    memcpy(insns, a->insns, a->n * sizeof(*insns));
    *ret = (struct sock_fprog){.len = (unsigned short)a->n, .filter = insns};
    return 0;
}

/* ---- evaluation ---- */

int seccomp_bpf_eval(const struct sock_fprog *prog, const struct seccomp_data *d, uint32_t *ret)
{
    uint32_t acc = 0, x = 0, mem[BPF_MEMWORDS] = {0};
    for (size_t pc = 0; pc < prog->len; pc++) {
        const struct sock_filter *f = &prog->filter[pc];
        uint32_t k = f->k;
        switch (f->code) {
        case BPF_LD | BPF_W | BPF_ABS:
            if (k > sizeof(*d) - 4 || k % 4)
                return -EINVAL;
            memcpy(&acc, (const char *)d + k, 4);
            break;
        case BPF_LD | BPF_W | BPF_LEN:
            acc = sizeof(*d);
            break;
        case BPF_LD | BPF_IMM:
            acc = k;
            break;
        case BPF_LDX | BPF_IMM:
            x = k;
            break;
        case BPF_LD | BPF_MEM:
        case BPF_LDX | BPF_MEM:
        case BPF_ST:
        case BPF_STX:
            if (k >= BPF_MEMWORDS)
                return -EINVAL;
            if (f->code == (BPF_LD | BPF_MEM))
                acc = mem[k];
            else if (f->code == (BPF_LDX | BPF_MEM))
                x = mem[k];
            else
                mem[k] = f->code == BPF_ST ? acc : x;
            break;
        case BPF_MISC | BPF_TAX:
            x = acc;
            break;
        case BPF_MISC | BPF_TXA:
            acc = x;
            break;
        case BPF_ALU | BPF_AND | BPF_K:
            acc &= k;
            break;
        case BPF_ALU | BPF_OR | BPF_K:
            acc |= k;
            break;
        case BPF_ALU | BPF_RSH | BPF_K:
            acc = k < 32 ? acc >> k : 0;
            break;
        case BPF_ALU | BPF_LSH | BPF_K:
            acc = k < 32 ? acc << k : 0;
            break;
        case BPF_JMP | BPF_JA:
            if (k >= prog->len - pc - 1)
                return -EINVAL;
            pc += k;
            break;
        case BPF_JMP | BPF_JEQ | BPF_K:
        case BPF_JMP | BPF_JGT | BPF_K:
        case BPF_JMP | BPF_JGE | BPF_K:
        case BPF_JMP | BPF_JSET | BPF_K:
        case BPF_JMP | BPF_JEQ | BPF_X:
        case BPF_JMP | BPF_JGT | BPF_X:
        case BPF_JMP | BPF_JGE | BPF_X:
        case BPF_JMP | BPF_JSET | BPF_X: {
            uint32_t v = BPF_SRC(f->code) == BPF_X ? x : k;
            bool taken = BPF_OP(f->code) == BPF_JEQ   ? acc == v
                         : BPF_OP(f->code) == BPF_JGT ? acc > v
                         : BPF_OP(f->code) == BPF_JGE ? acc >= v
                                                      : (acc & v) != 0;
            size_t skip = taken ? f->jt : f->jf;
            if (skip >= prog->len - pc - 1)
                return -EINVAL;
            pc += skip;
            break;
        }
        case BPF_RET | BPF_K:
            *ret = k;
            return 0;
        case BPF_RET | BPF_A:
            *ret = acc;
            return 0;
        default:
            return -EINVAL;
        }
    }
    return -EINVAL; /* ran off the end */
}

int seccomp_bpf_check(const struct sock_fprog *prog)
{
    if (prog->len == 0 || prog->len > BPF_MAXINSNS)
        return -EINVAL;
    for (size_t pc = 0; pc < prog->len; pc++) {
        const struct sock_filter *f = &prog->filter[pc];
        size_t room = prog->len - pc - 1;
        if (BPF_CLASS(f->code) != BPF_JMP)
            continue;
        if (BPF_OP(f->code) == BPF_JA ? f->k >= room : f->jt >= room || f->jf >= room)
            return -EINVAL;
    }
    uint16_t last = prog->filter[prog->len - 1].code;
    return last == (BPF_RET | BPF_K) || last == (BPF_RET | BPF_A) ? 0 : -EINVAL;
}

/* ---- agreement ---- */

static bool agree_on(const struct sock_fprog *a, const struct sock_fprog *b,
                     const struct seccomp_data *d)
{
    uint32_t ra, rb;
    return seccomp_bpf_eval(a, d, &ra) == 0 && seccomp_bpf_eval(b, d, &rb) == 0 && ra == rb;
}

#define ARG_VALUES_MAX (32 + 16)

static size_t fill_arg_values(const SeccompPolicy *p, uint64_t arg_values[ARG_VALUES_MAX])
{
    size_t n = 0;
    for (int bit = 0; bit < 32; bit++)
        arg_values[n++] = 1ull << bit;
    const uint64_t more[] = {0,
                             p->namespace_flags,
                             ~(uint64_t)p->namespace_flags & 0xffffffffu,
                             p->refused_family,
                             (1ull << 32) | p->refused_family,
                             0xffffffff00000000ull | p->refused_family,
                             1ull << 32,
                             0xffffffffull,
                             0xffffffffffffffffull,
                             (1ull << 32) | 0xffffffffull};
    for (size_t i = 0; i < sizeof(more) / sizeof(more[0]); i++)
        arg_values[n++] = more[i];
    for (size_t i = 0; i < p->n_personas && n < ARG_VALUES_MAX - 1; i++) {
        arg_values[n++] = p->personas[i];
        arg_values[n++] = (1ull << 32) | p->personas[i];
    }
    return n;
}

bool seccomp_programs_agree(const struct sock_fprog *a, const struct sock_fprog *b,
                            const SeccompPolicy *p, struct seccomp_data *ret_diff)
{
    if (seccomp_bpf_check(a) < 0 || seccomp_bpf_check(b) < 0)
        return false;
    uint64_t arg_values[ARG_VALUES_MAX];
    size_t n_args = fill_arg_values(p, arg_values);
    uint32_t arches[4] = {AUDIT_ARCH_AARCH64}; /* one no ABI here has */
    size_t n_arches = 1;
    for (size_t i = 0; i < p->n_abis && n_arches < 4; i++)
        if (!p->abis[i].nr_bit)
            arches[n_arches++] = p->abis[i].arch;
    /* Each arch: the first NR_SPAN numbers and as many with the x32 bit, each with
     * every argument value; a few far numbers; the top of the range. */
    for (size_t ai = 0; ai < n_arches; ai++) {
        for (uint32_t base = 0; base <= X32_BIT; base += X32_BIT) {
            for (uint32_t i = 0; i < NR_SPAN + 3; i++) {
                uint32_t nr = i < NR_SPAN    ? base + i
                              : i == NR_SPAN ? base + 0x3fffffffu
                                             : base + 0x10000000u * (i - NR_SPAN);
                for (size_t v = 0; v < n_args; v++) {
                    struct seccomp_data d = {.nr = (int)nr, .arch = arches[ai]};
                    d.args[0] = arg_values[v];
                    if (!agree_on(a, b, &d)) {
                        if (ret_diff)
                            *ret_diff = d;
                        return false;
                    }
                }
            }
        }
        for (uint32_t nr = 0xffffffffu; nr >= 0xfffff000u; nr--) {
            struct seccomp_data d = {.nr = (int)nr, .arch = arches[ai]};
            if (!agree_on(a, b, &d)) {
                if (ret_diff)
                    *ret_diff = d;
                return false;
            }
        }
    }
    return true;
}
