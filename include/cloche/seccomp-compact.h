/* A shorter seccomp program for the same allow-list (issue 17).
 *
 * The kernel's cost of installing a filter grows with its length (about a
 * quarter of a microsecond per instruction here, paid by every process a
 * container starts), and libseccomp tests each allowed number on its own. Most
 * allowed numbers come in runs, so this program tests ranges instead: per ABI,
 * a binary search over the boundaries between allowed and refused runs, after
 * a few numbers whose arguments are checked.
 *
 * It is used only where it decides exactly as libseccomp's program does:
 * security.c evaluates both, in user space (seccomp_bpf_eval), on every system
 * call number of each ABI (and of no known ABI) with argument values chosen to
 * reach each argument test, and keeps libseccomp's program on any difference. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

/* What one ABI's part of the program decides (all numbers as the ABI's own). */
typedef struct SeccompAbi {
    uint32_t arch;   /* AUDIT_ARCH_* */
    uint32_t nr_bit; /* added to every number: 0x40000000 for x32, else 0 */
    bool wide_args;  /* 64-bit arguments: the high word is tested too */
    const int *allowed;
    size_t n_allowed; /* always allowed, sorted or not; specials are left out */
    /* Numbers with argument tests, or -1 where the ABI has none. */
    int clone, unshare; /* allowed without any of namespace_flags in arg 0 */
    int clone3;         /* refused with ENOSYS */
    int personality;    /* allowed for arg 0 in personas */
    int socket;         /* allowed unless arg 0 is the refused family */
} SeccompAbi;

typedef struct SeccompPolicy {
    const SeccompAbi *abis;
    size_t n_abis; /* at most 3; x32 shares x86_64's arch, after it */
    uint32_t namespace_flags;
    const uint32_t *personas;
    size_t n_personas;
    uint32_t refused_family;
    uint32_t default_action; /* SECCOMP_RET_* with its data */
    uint32_t badarch_action; /* another arch, or x32 numbers without x32 */
} SeccompPolicy;

/* Emit the program (*ret->filter malloc'd). -E2BIG if a jump would not fit. */
int seccomp_compact_build(const SeccompPolicy *policy, struct sock_fprog *ret);

/* Run a classic BPF seccomp program on d, as the kernel would: its return
 * value in *ret. -EINVAL for an instruction outside what seccomp programs use,
 * a jump out of the program, or one that does not end in a return. */
int seccomp_bpf_eval(const struct sock_fprog *prog, const struct seccomp_data *d, uint32_t *ret);

/* What the kernel checks of a program's shape before any run: every jump
 * inside it, a return last. 0 or -EINVAL. */
int seccomp_bpf_check(const struct sock_fprog *prog);

/* Whether a and b (both passing seccomp_bpf_check) decide alike on the inputs described above, for
 * the ABIs of policy (and one unknown arch). On a difference, *ret_diff (if given) says where:
 * arch, nr and arg 0. */
bool seccomp_programs_agree(const struct sock_fprog *a, const struct sock_fprog *b,
                            const SeccompPolicy *policy, struct seccomp_data *ret_diff);
