/* Children that share our memory until they exec (see vmclone.h). */
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cloche/vmclone.h"

#if defined(__SANITIZE_ADDRESS__)
#define VMCLONE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define VMCLONE_ASAN 1
#endif
#endif
#ifdef VMCLONE_ASAN
#include <sanitizer/asan_interface.h>
/* AddressSanitizer does not know the child's stack: no shadow of an earlier
 * child's frames (it exec'd or exited inside them) may stay on the memory, for
 * the next child or whatever is mapped there next. */
#define stack_unpoison(p, n) __asan_unpoison_memory_region((p), (n))
#else
#define stack_unpoison(p, n) ((void)(p), (void)(n))
#endif

/* The child's stack (the deepest step, a path walk, uses a few KiB), and a guard
 * page below it. */
#define VMCLONE_STACK (256 * 1024)
#define VMCLONE_GUARD 4096

enum { VMCLONE_WAITING, VMCLONE_RUNNING, VMCLONE_DONE };

struct VmClone {
    struct clone_args args;
    int cwd_fd;
    void (*fn)(void *);
    void *arg;
    pthread_t thread;
    pid_t pid;         /* CLONE_PARENT_SETTID: written before the child runs */
    int err;           /* the clone's negative errno */
    _Atomic int state; /* a futex word */
};

/* clone3 on a new stack: the child, which has no frame to return to there, calls
 * fn(arg) and exits. The parent gets the pid or a negative errno. Registers other
 * than the result survive the system call, in the child too. */
long vmclone_raw(struct clone_args *args, size_t size, void (*fn)(void *), void *arg);
#if defined(__x86_64__)
__asm__(".text\n"
        ".globl vmclone_raw\n"
        ".hidden vmclone_raw\n"
        ".type vmclone_raw, @function\n"
        "vmclone_raw:\n"
        "    mov %rdx, %r8\n"
        "    mov %rcx, %r9\n"
        "    mov $435, %eax\n" /* __NR_clone3 */
        "    syscall\n"
        "    test %rax, %rax\n"
        "    jz 1f\n"
        "    ret\n"
        "1:  xor %ebp, %ebp\n"
        "    mov %r9, %rdi\n"
        "    call *%r8\n"
        "    mov $127, %edi\n"
        "    mov $60, %eax\n" /* __NR_exit */
        "    syscall\n"
        "    hlt\n"
        ".size vmclone_raw, .-vmclone_raw\n");
#define VMCLONE_ARCH 1
#elif defined(__aarch64__)
__asm__(".text\n"
        ".globl vmclone_raw\n"
        ".hidden vmclone_raw\n"
        ".type vmclone_raw, %function\n"
        "vmclone_raw:\n"
        "    mov x8, #435\n"
        "    svc #0\n"
        "    cbz x0, 1f\n"
        "    ret\n"
        "1:  mov x29, xzr\n"
        "    mov x30, xzr\n"
        "    mov x0, x3\n"
        "    blr x2\n"
        "    mov x0, #127\n"
        "    mov x8, #93\n" /* __NR_exit */
        "    svc #0\n"
        ".size vmclone_raw, .-vmclone_raw\n");
#define VMCLONE_ARCH 1
#else
#define VMCLONE_ARCH 0
long vmclone_raw(struct clone_args *args, size_t size, void (*fn)(void *), void *arg)
{
    (void)args, (void)size, (void)fn, (void)arg;
    return -ENOSYS;
}
#endif

bool vmclone_supported(void)
{
    return VMCLONE_ARCH;
}

static void futex_wake(_Atomic int *word)
{
    syscall(SYS_futex, word, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

/* The kernel's sigaction (rt_sigaction takes it, not glibc's). */
struct kernel_sigaction {
    void *handler;
    unsigned long flags;
    void *restorer;
    uint64_t mask;
};

/* In the child: its own copy of the handlers, so that none of the daemon's runs
 * here on shared memory once the child unblocks signals before its exec (which
 * would reset them anyway). */
static void reset_handlers(void)
{
    for (int sig = 1; sig < 65; sig++) {
        struct kernel_sigaction old;
        if (sig == SIGKILL || sig == SIGSTOP ||
            syscall(SYS_rt_sigaction, sig, NULL, &old, sizeof(old.mask)) != 0)
            continue;
        if (old.handler != (void *)SIG_DFL && old.handler != (void *)SIG_IGN) {
            struct kernel_sigaction dfl = {.handler = (void *)SIG_DFL};
            syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof(dfl.mask));
        }
    }
}

static void vmclone_child(void *p)
{
    VmClone *v = p;
    reset_handlers();
    atomic_store(&v->state, VMCLONE_RUNNING);
    futex_wake(&v->state);
    v->fn(v->arg);
    _exit(127);
}

/* clone3 with args on a stack of its own, calling fn(arg) in the child; returns
 * once the child has exec'd or exited (CLONE_VFORK): the pid or a negative errno. */
static long clone_on_new_stack(struct clone_args *args, void (*fn)(void *), void *arg)
{
    void *stack = mmap(NULL, VMCLONE_STACK + VMCLONE_GUARD, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
    if (stack == MAP_FAILED)
        return -errno;
    long r = 0;
    if (mprotect(stack, VMCLONE_GUARD, PROT_NONE) < 0)
        r = -errno;
    if (r == 0) {
        stack_unpoison((char *)stack + VMCLONE_GUARD, VMCLONE_STACK);
        args->stack = (uint64_t)(uintptr_t)stack;
        args->stack_size = VMCLONE_STACK + VMCLONE_GUARD;
        r = vmclone_raw(args, sizeof(*args), fn, arg);
        stack_unpoison((char *)stack + VMCLONE_GUARD, VMCLONE_STACK);
    }
    munmap(stack, VMCLONE_STACK + VMCLONE_GUARD);
    return r;
}

static void *vmclone_thread(void *p)
{
    VmClone *v = p;
    long r = 0;
    if (v->cwd_fd >= 0 && (unshare(CLONE_FS) < 0 || fchdir(v->cwd_fd) < 0))
        r = -errno;
    if (r == 0)
        r = clone_on_new_stack(&v->args, vmclone_child, v);
    if (r < 0)
        v->err = (int)r;
    atomic_store(&v->state, VMCLONE_DONE);
    futex_wake(&v->state);
    return NULL;
}

int vmclone_start(const struct clone_args *args, int cwd_fd, void (*fn)(void *), void *arg,
                  VmClone **ret, pid_t *ret_pid)
{
    *ret = NULL;
    if (!VMCLONE_ARCH)
        return -ENOSYS;
    VmClone *v = calloc(1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    v->args = *args;
    v->args.flags |= CLONE_VM | CLONE_VFORK | CLONE_PARENT_SETTID;
    v->args.parent_tid = (uint64_t)(uintptr_t)&v->pid;
    v->cwd_fd = cwd_fd;
    v->fn = fn;
    v->arg = arg;
    /* The helper, and so the child, starts with every signal blocked. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int r = pthread_create(&v->thread, NULL, vmclone_thread, v);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r > 0) {
        free(v);
        return -r;
    }
    *ret = v;
    int s;
    while ((s = atomic_load(&v->state)) == VMCLONE_WAITING)
        syscall(SYS_futex, &v->state, FUTEX_WAIT, VMCLONE_WAITING, NULL, NULL, 0);
    if (v->err < 0)
        return v->err;
    /* RUNNING, or DONE for a child that died before it said so: it was made. */
    *ret_pid = v->pid;
    return 0;
}

typedef struct ExecChild {
    void (*fn)(void *);
    void *arg;
} ExecChild;

static void exec_child(void *p)
{
    const ExecChild *e = p;
    reset_handlers();
    e->fn(e->arg);
    _exit(127);
}

pid_t vmclone_exec(const struct clone_args *args, void (*fn)(void *), void *arg)
{
    if (!VMCLONE_ARCH)
        return -ENOSYS;
    struct clone_args a = *args;
    a.flags |= CLONE_VM | CLONE_VFORK;
    ExecChild e = {.fn = fn, .arg = arg};
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    long r = clone_on_new_stack(&a, exec_child, &e);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return (pid_t)r;
}

void vmclone_finish(VmClone *v)
{
    if (!v)
        return;
    pthread_join(v->thread, NULL);
    free(v);
}
