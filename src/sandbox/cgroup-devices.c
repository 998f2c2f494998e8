/* The device allow-list of every container (doc/security.md): runc's defaults,
 * /dev/net/tun, and /dev/fuse for privileged containers. On hosts with a v1
 * devices hierarchy through its files (deny all, then allow); otherwise a
 * BPF_PROG_TYPE_CGROUP_DEVICE program attached to the container's v2 group.
 * The two programs (plain, privileged) are loaded once, at set-up. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/bpf.h>

#include "cgroup-internal.h"

typedef struct DeviceRule {
    char type;        /* 'c' or 'b' */
    int major, minor; /* -1: any */
    unsigned access;  /* BPF_DEVCG_ACC_* */
    bool privileged_only;
} DeviceRule;

#define ACC_M BPF_DEVCG_ACC_MKNOD
#define ACC_RWM (BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE | BPF_DEVCG_ACC_MKNOD)

static const DeviceRule rules[] = {
    {'c', -1, -1, ACC_M, false}, /* mknod of any node: opening is what counts */
    {'b', -1, -1, ACC_M, false},    {'c', 1, 3, ACC_RWM, false}, /* null */
    {'c', 1, 5, ACC_RWM, false},                                 /* zero */
    {'c', 1, 7, ACC_RWM, false},                                 /* full */
    {'c', 1, 8, ACC_RWM, false},                                 /* random */
    {'c', 1, 9, ACC_RWM, false},                                 /* urandom */
    {'c', 5, 0, ACC_RWM, false},                                 /* tty */
    {'c', 5, 1, ACC_RWM, false},                                 /* console */
    {'c', 5, 2, ACC_RWM, false},                                 /* ptmx */
    {'c', 136, -1, ACC_RWM, false},                              /* pts */
    {'c', 10, 200, ACC_RWM, false},                              /* net/tun */
    {'c', 10, 229, ACC_RWM, true},                               /* fuse */
};

/* ---- v1 ---- */

static void format_rule(const DeviceRule *d, char *buf, size_t size)
{
    char major[16] = "*", minor[16] = "*";
    if (d->major >= 0)
        snprintf(major, sizeof(major), "%d", d->major);
    if (d->minor >= 0)
        snprintf(minor, sizeof(minor), "%d", d->minor);
    snprintf(buf, size, "%c %s:%s %s%s%s", d->type, major, minor,
             d->access & BPF_DEVCG_ACC_READ ? "r" : "", d->access & BPF_DEVCG_ACC_WRITE ? "w" : "",
             d->access & BPF_DEVCG_ACC_MKNOD ? "m" : "");
}

static int set_v1(const Cgroup *cg, int idx, bool privileged)
{
    int r = cgroup_group_write(cg, idx, "devices.deny", "a");
    if (r < 0)
        return r;
    /* One open for every line: the kernel takes one rule per write. */
    _cleanup_close_ int fd = cgroup_group_open(cg, idx, "devices.allow", O_WRONLY);
    if (fd < 0)
        return fd;
    for (size_t i = 0; i < ELEMENTSOF(rules); i++) {
        if (rules[i].privileged_only && !privileged)
            continue;
        char line[64];
        format_rule(&rules[i], line, sizeof(line));
        size_t len = strlen(line);
        if (write(fd, line, len) != (ssize_t)len)
            return -errno;
    }
    return 0;
}

/* ---- v2 ---- */

static struct bpf_insn insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm)
{
    return (struct bpf_insn){.code = code, .dst_reg = dst, .src_reg = src, .off = off, .imm = imm};
}

#define LDX_W(dst, src, off) insn(BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0)
#define MOV_REG(dst, src) insn(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0)
#define MOV_IMM(dst, imm) insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm)
#define AND_IMM(dst, imm) insn(BPF_ALU | BPF_AND | BPF_K, dst, 0, 0, imm)
#define RSH_IMM(dst, imm) insn(BPF_ALU | BPF_RSH | BPF_K, dst, 0, 0, imm)
#define JNE_IMM(dst, imm, off) insn(BPF_JMP | BPF_JNE | BPF_K, dst, 0, off, imm)
#define EXIT() insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)

#define PROG_MAX (6 + ELEMENTSOF(rules) * 8 + 2)

/* r1 = struct bpf_cgroup_dev_ctx: access_type (access << 16 | type), major,
 * minor. Each rule is a block that returns 1 when it matches and jumps to the
 * next block at its first mismatch; after the last, 0 (denied). */
static size_t build_program(bool privileged, struct bpf_insn *p)
{
    size_t n = 0;
    p[n++] = LDX_W(2, 1, 0);
    p[n++] = MOV_REG(3, 2);
    p[n++] = AND_IMM(3, 0xffff); /* r3 = type */
    p[n++] = MOV_REG(4, 2);
    p[n++] = RSH_IMM(4, 16); /* r4 = access */
    p[n++] = LDX_W(5, 1, 4); /* r5 = major */
    p[n++] = LDX_W(6, 1, 8); /* r6 = minor */
    for (size_t i = 0; i < ELEMENTSOF(rules); i++) {
        const DeviceRule *d = &rules[i];
        if (d->privileged_only && !privileged)
            continue;
        size_t len = 4 + (d->major >= 0) + (d->minor >= 0) + 2;
        size_t next = n + len;
        int type = d->type == 'c' ? BPF_DEVCG_DEV_CHAR : BPF_DEVCG_DEV_BLOCK;
        p[n] = JNE_IMM(3, type, (int16_t)(next - n - 1)), n++;
        p[n++] = MOV_REG(0, 4);
        p[n++] = AND_IMM(0, (int32_t)~d->access);
        p[n] = JNE_IMM(0, 0, (int16_t)(next - n - 1)), n++;
        if (d->major >= 0)
            p[n] = JNE_IMM(5, d->major, (int16_t)(next - n - 1)), n++;
        if (d->minor >= 0)
            p[n] = JNE_IMM(6, d->minor, (int16_t)(next - n - 1)), n++;
        p[n++] = MOV_IMM(0, 1);
        p[n++] = EXIT();
    }
    p[n++] = MOV_IMM(0, 0);
    p[n++] = EXIT();
    return n;
}

static int load_program(bool privileged)
{
    struct bpf_insn prog[PROG_MAX];
    size_t n = build_program(privileged, prog);
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    attr.insns = (uint64_t)(uintptr_t)prog;
    attr.insn_cnt = (uint32_t)n;
    attr.license = (uint64_t)(uintptr_t) "Apache-2.0";
    int fd = (int)syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof(attr));
    return fd < 0 ? -errno : fd;
}

int cgroup_devices_setup(CgroupSystem *s)
{
    if (s->index[CGROUP_CONTROLLER_DEVICES] >= 0 || s->v2_index < 0 || s->plain_files)
        return 0;
    for (int i = 0; i < 2; i++) {
        int fd = load_program(i == 1);
        if (fd < 0)
            return fd;
        s->device_progs[i] = fd;
    }
    return 0;
}

/* BPF_PROG_ATTACH or BPF_PROG_DETACH of a device program on a v2 group. */
static int device_prog_call(int cmd, int group, int prog, uint32_t flags)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.target_fd = (uint32_t)group;
    attr.attach_bpf_fd = (uint32_t)prog;
    attr.attach_type = BPF_CGROUP_DEVICE;
    attr.attach_flags = flags;
    return syscall(SYS_bpf, cmd, &attr, sizeof(attr)) < 0 ? -errno : 0;
}

int cgroup_set_devices(const Cgroup *cg, bool privileged)
{
    const CgroupSystem *s = cg->system;
    int idx = s->index[CGROUP_CONTROLLER_DEVICES];
    if (idx >= 0)
        return set_v1(cg, idx, privileged);
    int prog = s->device_progs[privileged ? 1 : 0];
    if (prog < 0)
        return s->plain_files ? 0 : -EOPNOTSUPP;
    _cleanup_close_ int group = cgroup_open_v2_fd(cg);
    if (group < 0)
        return group;
    int r = device_prog_call(BPF_PROG_ATTACH, group, prog, BPF_F_ALLOW_MULTI);
    /* A group that keeps its program across a stop (a start makes a new init in
     * the same group): the kernel refuses to attach one program twice (EINVAL).
     * Detached and attached again, so the group holds it once. */
    if (r != -EINVAL || device_prog_call(BPF_PROG_DETACH, group, prog, 0) < 0)
        return r;
    return device_prog_call(BPF_PROG_ATTACH, group, prog, BPF_F_ALLOW_MULTI);
}

int cgroup_view_dirs(const Cgroup *cg, CgroupViewDir *ret, size_t max, size_t *ret_n)
{
    const CgroupSystem *s = cg->system;
    size_t n = 0;
    for (size_t i = 0; i < s->n_hierarchies; i++) {
        const Hierarchy *h = &s->hierarchies[i];
        if (n == max)
            return -E2BIG;
        CgroupViewDir *v = &ret[n];
        int k = snprintf(v->path, sizeof(v->path), "%s/%s/%s", h->mount, s->parent, cg->name);
        if (k < 0 || (size_t)k >= sizeof(v->path))
            return -ENAMETOOLONG;
        /* Pure v2: the group is /sys/fs/cgroup itself; otherwise each hierarchy
         * under the name the host mounts it at (memory, cpu, unified, ...). */
        const char *base = strrchr(h->mount, '/');
        base = base ? base + 1 : h->mount;
        if (s->layout == CGROUP_LAYOUT_V2)
            base = "";
        if (strlen(base) >= sizeof(v->name))
            return -ENAMETOOLONG;
        strcpy(v->name, base);
        n++;
    }
    *ret_n = n;
    return 0;
}
