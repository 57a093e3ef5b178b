// steer.c - experiment: symmetric inner-flow steering for a multi-queue TAP
// (TUNSETSTEERINGEBPF, eBPF socket filter) and a SO_REUSEPORT UDP/4789 group
// (SO_ATTACH_REUSEPORT_CBPF, classic BPF on the VXLAN payload).
// Both programs compute the same symmetric hash of the inner IPv4 flow; we
// check queue(flow) == socket(reverse flow) for TCP, UDP, ICMP echo, IP
// fragments and ICMP errors (hashed on the quoted header).
//
// Needs namespaces steer-a (cell underlay, sockets), steer-b (VXLAN sender),
// steer-c (the "container": TAP lives here) - created by run.sh (scripts/steer-experiment/README.md).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef NQ
#define NQ 2            /* workers: TAP queues == reuseport sockets */
#endif
#define NFLOWS 200
#define VXPORT 4789
#define TAPNAME "stap0"
#define GOLDEN 0x9E3779B1u

static void die(const char *m) { perror(m); exit(2); }

/* ------------------------------------------------------------------ */
/* reference implementation (userspace) of the symmetric hash          */
/* ip points at an IPv4 header, len bytes available                    */
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }
static uint16_t rd16(const uint8_t *p) { return p[0] << 8 | p[1]; }
static unsigned ref_queue(const uint8_t *ip, int len, unsigned n)
{
    if (len < 20) return 0;
    unsigned ihl = (ip[0] & 15) * 4;
    uint32_t h = rd32(ip + 12) ^ rd32(ip + 16);
    const uint8_t *l4 = NULL;
    if (!(rd16(ip + 6) & 0x3fff)) {
        uint8_t pr = ip[9];
        if (pr == 6 || pr == 17) l4 = ip + ihl;
        else if (pr == 1) {
            uint8_t t = ip[ihl];
            if (t == 3 || t == 11 || t == 12) {
                const uint8_t *q = ip + ihl + 8;
                h = rd32(q + 12) ^ rd32(q + 16);
                if (!(rd16(q + 6) & 0x3fff) && (q[9] == 6 || q[9] == 17))
                    l4 = q + (q[0] & 15) * 4;
            }
        }
    }
    if (l4) { uint32_t p = rd32(l4); h ^= (p >> 16) ^ (p & 0xffff); }
    h *= GOLDEN;
    return (h >> 16) % n;
}

/* ------------------------------------------------------------------ */
/* eBPF steering program for the TAP (offset 0 = Ethernet header)      */
static struct bpf_insn ep[80];
static int epc, elab[16];
static struct { int pc, lab; } efix[40];
static int nefix;
#define EI(c, d, s, o, i) ((struct bpf_insn){ .code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i) })
static void E(struct bpf_insn i) { ep[epc++] = i; }
static void EJ(struct bpf_insn i, int lab) { efix[nefix].pc = epc; efix[nefix++].lab = lab; E(i); }
static void EL(int lab) { elab[lab] = epc; }
enum { L_RET0 = 1, L_FOLD, L_PORTS, L_ERR, L_QP };
#define LDABS(sz, off) E(EI(BPF_LD | BPF_ABS | (sz), 0, 0, 0, (off)))
#define LDIND(sz, r, off) E(EI(BPF_LD | BPF_IND | (sz), 0, (r), 0, (off)))
#define ALU32K(op, d, k) E(EI(BPF_ALU | (op) | BPF_K, (d), 0, 0, (k)))
#define ALU32X(op, d, s) E(EI(BPF_ALU | (op) | BPF_X, (d), (s), 0, 0))
#define ALU64K(op, d, k) E(EI(BPF_ALU64 | (op) | BPF_K, (d), 0, 0, (k)))
#define ALU64X(op, d, s) E(EI(BPF_ALU64 | (op) | BPF_X, (d), (s), 0, 0))
#define JK(op, d, k, lab) EJ(EI(BPF_JMP | (op) | BPF_K, (d), 0, 0, (k)), (lab))

static void build_ebpf(unsigned n)
{
    ALU64X(BPF_MOV, 6, 1);                 /* r6 = skb (LD_ABS/IND need it)  */
    LDABS(BPF_H, 12);                      /* ethertype                      */
    JK(BPF_JNE, 0, 0x0800, L_RET0);
    LDABS(BPF_B, 14);                      /* ver/ihl                        */
    ALU32K(BPF_AND, 0, 0xf);
    ALU32K(BPF_LSH, 0, 2);
    ALU64X(BPF_MOV, 8, 0);
    ALU64K(BPF_ADD, 8, 14);                /* r8 = L4 offset                 */
    LDABS(BPF_W, 26);                      /* saddr                          */
    ALU32X(BPF_MOV, 7, 0);
    LDABS(BPF_W, 30);                      /* daddr                          */
    ALU32X(BPF_XOR, 7, 0);                 /* r7 = saddr ^ daddr             */
    LDABS(BPF_H, 20);                      /* flags/frag offset              */
    ALU32K(BPF_AND, 0, 0x3fff);
    JK(BPF_JNE, 0, 0, L_FOLD);             /* any fragment: addresses only   */
    LDABS(BPF_B, 23);                      /* protocol                       */
    JK(BPF_JEQ, 0, 6, L_PORTS);
    JK(BPF_JEQ, 0, 17, L_PORTS);
    JK(BPF_JNE, 0, 1, L_FOLD);
    LDIND(BPF_B, 8, 0);                    /* ICMP type                      */
    JK(BPF_JEQ, 0, 3, L_ERR);
    JK(BPF_JEQ, 0, 11, L_ERR);
    JK(BPF_JNE, 0, 12, L_FOLD);
    EL(L_ERR);
    ALU64K(BPF_ADD, 8, 8);                 /* r8 = quoted IPv4 header        */
    LDIND(BPF_W, 8, 12);
    ALU32X(BPF_MOV, 7, 0);
    LDIND(BPF_W, 8, 16);
    ALU32X(BPF_XOR, 7, 0);                 /* r7 = qsaddr ^ qdaddr           */
    LDIND(BPF_H, 8, 6);
    ALU32K(BPF_AND, 0, 0x3fff);
    JK(BPF_JNE, 0, 0, L_FOLD);
    LDIND(BPF_B, 8, 9);
    JK(BPF_JEQ, 0, 6, L_QP);
    JK(BPF_JNE, 0, 17, L_FOLD);
    EL(L_QP);
    LDIND(BPF_B, 8, 0);
    ALU32K(BPF_AND, 0, 0xf);
    ALU32K(BPF_LSH, 0, 2);
    ALU64X(BPF_ADD, 8, 0);                 /* r8 = quoted L4 offset          */
    EL(L_PORTS);
    LDIND(BPF_W, 8, 0);                    /* sport<<16 | dport              */
    ALU32X(BPF_MOV, 9, 0);
    ALU32K(BPF_RSH, 9, 16);
    ALU32K(BPF_AND, 0, 0xffff);
    ALU32X(BPF_XOR, 0, 9);                 /* sport ^ dport (symmetric)      */
    ALU32X(BPF_XOR, 7, 0);
    EL(L_FOLD);
    ALU32K(BPF_MUL, 7, (int32_t)GOLDEN);
    ALU32K(BPF_RSH, 7, 16);
    ALU32X(BPF_MOV, 0, 7);
    ALU32K(BPF_MOD, 0, n);
    E(EI(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
    EL(L_RET0);
    ALU64K(BPF_MOV, 0, 0);
    E(EI(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
    for (int i = 0; i < nefix; i++) ep[efix[i].pc].off = elab[efix[i].lab] - efix[i].pc - 1;
}

static int load_ebpf(void)
{
    static char log[65536];
    union bpf_attr a;
    memset(&a, 0, sizeof a);
    a.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
    a.insns = (uintptr_t)ep;
    a.insn_cnt = epc;
    a.license = (uintptr_t)"GPL";
    a.log_buf = (uintptr_t)log;
    a.log_size = sizeof log;
    a.log_level = 1;
    int fd = syscall(SYS_bpf, BPF_PROG_LOAD, &a, sizeof a);
    if (fd < 0) { fprintf(stderr, "verifier log:\n%s\n", log); die("BPF_PROG_LOAD"); }
    return fd;
}

/* ------------------------------------------------------------------ */
/* classic BPF for the reuseport group (offset 0 = VXLAN header)       */
static struct sock_filter cp[80];
static int cpc, clab[16];
static struct { int pc, jt, jf, ja; } cfix[40];
static int ncfix;
static void C(uint16_t code, uint32_t k) { cp[cpc++] = (struct sock_filter){ code, 0, 0, k }; }
/* conditional jump: label 0 = fall through */
static void CJ(uint16_t code, uint32_t k, int jt, int jf) { cfix[ncfix].pc = cpc; cfix[ncfix].jt = jt; cfix[ncfix].jf = jf; cfix[ncfix++].ja = 0; C(code, k); }
static void CJA(int lab) { cfix[ncfix].pc = cpc; cfix[ncfix].jt = cfix[ncfix].jf = 0; cfix[ncfix++].ja = lab; C(BPF_JMP | BPF_JA, 0); }
static void CL(int lab) { clab[lab] = cpc; }
enum { C_RET0 = 1, C_FOLD, C_P, C_ICMP, C_E, C_QP, C_PX };
#define IP 22 /* 8 VXLAN + 14 inner Ethernet */

static void build_cbpf(unsigned n)
{
    C(BPF_LD | BPF_H | BPF_ABS, 8 + 12);          /* inner ethertype          */
    CJ(BPF_JMP | BPF_JEQ | BPF_K, 0x0800, 0, C_RET0);
    C(BPF_LD | BPF_W | BPF_ABS, IP + 12);
    C(BPF_MISC | BPF_TAX, 0);
    C(BPF_LD | BPF_W | BPF_ABS, IP + 16);
    C(BPF_ALU | BPF_XOR | BPF_X, 0);
    C(BPF_ST, 0);                                 /* M0 = saddr ^ daddr       */
    C(BPF_LD | BPF_H | BPF_ABS, IP + 6);
    CJ(BPF_JMP | BPF_JSET | BPF_K, 0x3fff, C_FOLD, 0);
    C(BPF_LD | BPF_B | BPF_ABS, IP + 9);
    CJ(BPF_JMP | BPF_JEQ | BPF_K, 6, C_P, 0);
    CJ(BPF_JMP | BPF_JEQ | BPF_K, 17, C_P, 0);
    CJ(BPF_JMP | BPF_JEQ | BPF_K, 1, C_ICMP, C_FOLD);
    CL(C_P);
    C(BPF_LDX | BPF_B | BPF_MSH, IP);             /* X = ihl*4                */
    C(BPF_MISC | BPF_TXA, 0);
    C(BPF_ALU | BPF_ADD | BPF_K, IP);
    C(BPF_MISC | BPF_TAX, 0);                     /* X = L4 offset            */
    CJA(C_PX);
    CL(C_ICMP);
    C(BPF_LDX | BPF_B | BPF_MSH, IP);
    C(BPF_LD | BPF_B | BPF_IND, IP);              /* ICMP type                */
    CJ(BPF_JMP | BPF_JEQ | BPF_K, 3, C_E, 0);
    CJ(BPF_JMP | BPF_JEQ | BPF_K, 11, C_E, 0);
    CJ(BPF_JMP | BPF_JEQ | BPF_K, 12, C_E, C_FOLD);
    CL(C_E);
    C(BPF_MISC | BPF_TXA, 0);
    C(BPF_ALU | BPF_ADD | BPF_K, IP + 8);
    C(BPF_ST, 3);                                 /* M3 = quoted IP offset    */
    C(BPF_MISC | BPF_TAX, 0);
    C(BPF_LD | BPF_W | BPF_IND, 12);
    C(BPF_ST, 1);
    C(BPF_LD | BPF_W | BPF_IND, 16);
    C(BPF_LDX | BPF_MEM, 1);
    C(BPF_ALU | BPF_XOR | BPF_X, 0);
    C(BPF_ST, 0);                                 /* M0 = qsaddr ^ qdaddr     */
    C(BPF_LDX | BPF_MEM, 3);
    C(BPF_LD | BPF_H | BPF_IND, 6);
    CJ(BPF_JMP | BPF_JSET | BPF_K, 0x3fff, C_FOLD, 0);
    C(BPF_LD | BPF_B | BPF_IND, 9);
    CJ(BPF_JMP | BPF_JEQ | BPF_K, 6, C_QP, 0);
    CJ(BPF_JMP | BPF_JEQ | BPF_K, 17, C_QP, C_FOLD);
    CL(C_QP);
    C(BPF_LD | BPF_B | BPF_IND, 0);
    C(BPF_ALU | BPF_AND | BPF_K, 0xf);
    C(BPF_ALU | BPF_LSH | BPF_K, 2);
    C(BPF_ALU | BPF_ADD | BPF_X, 0);
    C(BPF_MISC | BPF_TAX, 0);                     /* X = quoted L4 offset     */
    CL(C_PX);
    C(BPF_LD | BPF_W | BPF_IND, 0);
    C(BPF_ST, 2);
    C(BPF_ALU | BPF_RSH | BPF_K, 16);
    C(BPF_MISC | BPF_TAX, 0);
    C(BPF_LD | BPF_MEM, 2);
    C(BPF_ALU | BPF_AND | BPF_K, 0xffff);
    C(BPF_ALU | BPF_XOR | BPF_X, 0);              /* sport ^ dport            */
    C(BPF_LDX | BPF_MEM, 0);
    C(BPF_ALU | BPF_XOR | BPF_X, 0);
    C(BPF_ST, 0);
    CL(C_FOLD);
    C(BPF_LD | BPF_MEM, 0);
    C(BPF_ALU | BPF_MUL | BPF_K, GOLDEN);
    C(BPF_ALU | BPF_RSH | BPF_K, 16);
    C(BPF_ALU | BPF_MOD | BPF_K, n);
    C(BPF_RET | BPF_A, 0);
    CL(C_RET0);
    C(BPF_RET | BPF_K, 0);
    for (int i = 0; i < ncfix; i++) {
        int pc = cfix[i].pc;
        if (cfix[i].ja) cp[pc].k = clab[cfix[i].ja] - pc - 1;
        else {
            cp[pc].jt = cfix[i].jt ? clab[cfix[i].jt] - pc - 1 : 0;
            cp[pc].jf = cfix[i].jf ? clab[cfix[i].jf] - pc - 1 : 0;
        }
    }
}

/* ------------------------------------------------------------------ */
static void enter_ns(const char *name)
{
    char p[128];
    snprintf(p, sizeof p, "/var/run/netns/%s", name);
    int fd = open(p, O_RDONLY);
    if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) die(p);
    close(fd);
}

static int tapfd[NQ];
static uint8_t tapmac[6];
static const uint8_t gwmac[6] = { 0x02, 0, 0, 0, 0, 0xfe };

static int open_queue(void)
{
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK);
    if (fd < 0) die("open tun");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, TAPNAME);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE;
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) die("TUNSETIFF");
    return fd;
}

static int set_queue(int fd, int attach)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = attach ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE;
    return ioctl(fd, TUNSETQUEUE, &ifr);
}

static int usock[8], nusock;     /* reuseport group in steer-a, index = bind order */
static int usock_id[8];          /* stable identity for printing */
static int next_id;
static int sndsock[4];           /* VXLAN senders in steer-b (different src ports) */

static int bind_vx(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0), one = 1;
    if (s < 0) die("socket");
    if (setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) die("SO_REUSEPORT");
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(VXPORT) };
    if (bind(s, (void *)&a, sizeof a) < 0) die("bind 4789");
    return s;
}

/* ------------------------------------------------------------------ */
/* packet building                                                     */
static uint16_t csum(const void *p, int n)
{
    const uint8_t *b = p; uint32_t s = 0;
    for (int i = 0; i + 1 < n; i += 2) s += b[i] << 8 | b[i + 1];
    if (n & 1) s += b[n - 1] << 8;
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return ~s;
}
static int put_ip(uint8_t *p, uint32_t src, uint32_t dst, uint8_t proto, int l4len, uint16_t frag, uint16_t id)
{
    memset(p, 0, 20);
    p[0] = 0x45; p[8] = 64; p[9] = proto;
    uint16_t tl = 20 + l4len;
    p[2] = tl >> 8; p[3] = tl; p[4] = id >> 8; p[5] = id; p[6] = frag >> 8; p[7] = frag;
    uint32_t s = htonl(src), d = htonl(dst);
    memcpy(p + 12, &s, 4); memcpy(p + 16, &d, 4);
    uint16_t c = csum(p, 20); p[10] = c >> 8; p[11] = c;
    return 20;
}
static int put_ports(uint8_t *p, uint16_t sp, uint16_t dp) { p[0] = sp >> 8; p[1] = sp; p[2] = dp >> 8; p[3] = dp; return 4; }
static int put_eth(uint8_t *p, const uint8_t *dst, const uint8_t *src)
{
    memcpy(p, dst, 6); memcpy(p + 6, src, 6); p[12] = 8; p[13] = 0; return 14;
}

/* build an inner IPv4 packet; returns length */
enum { K_TCP, K_UDP, K_ECHO, K_FRAG1, K_FRAG2, K_ICMPERR_UDP, K_TTLEXC_TCP, K_N };
static const char *kname[] = { "tcp", "udp", "icmp-echo", "frag-first", "frag-later", "icmp3-quoting-udp", "icmp11-quoting-tcp" };
static int build_inner(uint8_t *p, int kind, uint32_t src, uint32_t dst, uint16_t sp, uint16_t dp, uint32_t router)
{
    uint8_t l4[200]; int n = 0;
    memset(l4, 0, sizeof l4);
    switch (kind) {
    case K_TCP: put_ports(l4, sp, dp); l4[12] = 0x50; l4[13] = 0x12; n = 20;
        return put_ip(p, src, dst, 6, n, 0, 1) + (memcpy(p + 20, l4, n), n);
    case K_UDP: put_ports(l4, sp, dp); l4[5] = 16; n = 16;
        return put_ip(p, src, dst, 17, n, 0, 2) + (memcpy(p + 20, l4, n), n);
    case K_ECHO: l4[0] = 0; n = 16;          /* echo reply */
        return put_ip(p, src, dst, 1, n, 0, 3) + (memcpy(p + 20, l4, n), n);
    case K_FRAG1: put_ports(l4, sp, dp); n = 48;
        return put_ip(p, src, dst, 17, n, 0x2000, 4) + (memcpy(p + 20, l4, n), n);
    case K_FRAG2: n = 40;                    /* offset 48 bytes = 6 units, no L4 header */
        return put_ip(p, src, dst, 17, n, 6, 4) + (memcpy(p + 20, l4, n), n);
    case K_ICMPERR_UDP:                      /* src says: port unreachable for dst->src UDP */
    case K_TTLEXC_TCP: {
        int tcp = kind == K_TTLEXC_TCP;
        l4[0] = tcp ? 11 : 3; l4[1] = tcp ? 0 : 3;
        /* quoted: original packet went dst:dp -> src:sp (reverse of this error's path) */
        put_ip(l4 + 8, dst, src, tcp ? 6 : 17, 8, 0, 77);
        put_ports(l4 + 28, dp, sp);
        n = 8 + 20 + 8;
        uint32_t from = tcp ? router : src;
        return put_ip(p, from, dst, 1, n, 0, 5) + (memcpy(p + 20, l4, n), n);
    }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
struct flow { int type; uint32_t c, r; uint16_t s, d; int q_tap, q_vx, tap_frames, vx_frames, bad; };
static struct flow fl[NFLOWS];
enum { F_TCP, F_UDP, F_ECHO, F_FRAG, F_ERR, F_N };
static const char *fname[] = { "tcp", "udp", "icmp-echo", "udp-fragmented", "icmp-error" };

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

static int mism_prog;  /* program result != userspace reference */

/* read TAP frames for up to `ms`, returns count matching flow f (addresses c,r) */
static void read_tap(struct flow *f, int want, int ms)
{
    uint8_t buf[4096];
    double end = now() + ms / 1000.0;
    while (now() < end && f->tap_frames < want) {
        struct pollfd pf[NQ];
        for (int i = 0; i < NQ; i++) pf[i] = (struct pollfd){ tapfd[i], POLLIN, 0 };
        poll(pf, NQ, 5);
        for (int i = 0; i < NQ; i++) {
            int n;
            while ((n = read(tapfd[i], buf, sizeof buf)) > 0) {
                if (n < 34 || buf[12] != 8 || buf[13] != 0) continue;
                uint32_t s = rd32(buf + 26), d = rd32(buf + 30);
                if (!f || !((s == f->c && d == f->r) || (s == f->r && d == f->c))) continue;
                unsigned rq = ref_queue(buf + 14, n - 14, NQ);
                if ((int)rq != i) { mism_prog++; f->bad |= 1; }
                if (f->q_tap < 0) f->q_tap = i; else if (f->q_tap != i) f->bad |= 2;
                f->tap_frames++;
            }
        }
    }
}

static uint8_t vxbuf[2048];
/* send inner packet in VXLAN from steer-b; returns reuseport index it landed on */
static int send_vx(const uint8_t *inner, int ilen, int sndi)
{
    uint8_t *p = vxbuf; int n = 0;
    memset(p, 0, 8); p[0] = 0x08; p[4] = 0; p[5] = 0; p[6] = 42; n = 8;     /* VNI 42 */
    n += put_eth(p + n, tapmac, gwmac);                                     /* inner eth */
    memcpy(p + n, inner, ilen); n += ilen;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(VXPORT) };
    inet_pton(AF_INET, "198.18.12.1", &a.sin_addr);
    if (sendto(sndsock[sndi % 4], p, n, 0, (void *)&a, sizeof a) != n) die("sendto vx");
    uint8_t rb[2048];
    double end = now() + 0.2;
    while (now() < end) {
        struct pollfd pf[8];
        for (int i = 0; i < nusock; i++) pf[i] = (struct pollfd){ usock[i], POLLIN, 0 };
        poll(pf, nusock, 5);
        for (int i = 0; i < nusock; i++) {
            int m = recv(usock[i], rb, sizeof rb, 0);
            if (m == n && !memcmp(rb, p, n)) return i;
        }
    }
    return -1;
}

static int tsock_c[4]; /* not used */

int main(int argc, char **argv)
{
    (void)argc; (void)argv; (void)tsock_c;
    srand(12345);
    build_ebpf(NQ);
    build_cbpf(NQ);
    printf("eBPF steering program: %d insns; cBPF reuseport program: %d insns\n", epc, cpc);
    if (getenv("DUMP")) {
        for (int i = 0; i < epc; i++) printf("e%02d code=%02x dst=%d src=%d off=%d imm=%d\n", i, ep[i].code, ep[i].dst_reg, ep[i].src_reg, ep[i].off, ep[i].imm);
        for (int i = 0; i < cpc; i++) printf("c%02d { 0x%02x, %d, %d, 0x%08x }\n", i, cp[i].code, cp[i].jt, cp[i].jf, cp[i].k);
    }

    if (getenv("LOADONLY")) {  /* capability probe: only BPF_PROG_LOAD + SO_ATTACH_REUSEPORT_CBPF */
        int s = socket(AF_INET, SOCK_DGRAM, 0), one = 1;
        setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        struct sock_fprog f = { .len = cpc, .filter = cp };
        printf("SO_ATTACH_REUSEPORT_CBPF: %s\n", setsockopt(s, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &f, sizeof f) ? strerror(errno) : "ok");
        printf("BPF_PROG_LOAD socket_filter: fd %d\n", load_ebpf());
        return 0;
    }
    /* ---- cell side: reuseport group in steer-a ---- */
    enter_ns("steer-a");
    for (int i = 0; i < NQ; i++) { usock[i] = bind_vx(); usock_id[i] = next_id++; }
    nusock = NQ;
    struct sock_fprog cf = { .len = cpc, .filter = cp };
    if (getenv("NOCBPF")) printf("CONTROL: no reuseport cBPF attached\n");
    else if (setsockopt(usock[0], SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &cf, sizeof cf) < 0) die("SO_ATTACH_REUSEPORT_CBPF");

    /* ---- peer: VXLAN senders in steer-b ---- */
    enter_ns("steer-b");
    for (int i = 0; i < 4; i++) {
        sndsock[i] = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(40000 + 1111 * i) };
        inet_pton(AF_INET, "198.18.12.2", &a.sin_addr);
        if (bind(sndsock[i], (void *)&a, sizeof a) < 0) die("bind sender");
    }

    /* ---- container: TAP with 2 queues in steer-c ---- */
    enter_ns("steer-c");
    for (int i = 0; i < NQ; i++) tapfd[i] = open_queue();
    int pfd = load_ebpf();
    if (getenv("NOSTEER")) printf("CONTROL: no TUNSETSTEERINGEBPF (tun automq)\n");
    else if (ioctl(tapfd[0], TUNSETSTEERINGEBPF, &pfd) < 0) die("TUNSETSTEERINGEBPF");
    {
        struct ifreq ifr; memset(&ifr, 0, sizeof ifr);
        if (ioctl(tapfd[0], SIOCGIFHWADDR, &ifr) < 0) die("SIOCGIFHWADDR");
        memcpy(tapmac, ifr.ifr_hwaddr.sa_data, 6);
    }
    const char* cfg = getenv("STEER_CFG");  // set by run.sh: the cfg-tap.sh beside this file
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "sh '%s'", cfg != NULL ? cfg : "cfg-tap.sh");
    if (system(cmd) != 0) { fprintf(stderr, "cfg-tap.sh failed\n"); return 2; }
    usleep(200000);
    { struct flow dummy = { .c = 1, .r = 1, .q_tap = -1 }; read_tap(&dummy, 1000, 100); } /* drain */

    /* ---- cost: BPF_PROG_TEST_RUN of the eBPF program on a TCP frame ---- */
    {
        uint8_t fr[128]; int n = put_eth(fr, tapmac, gwmac);
        n += build_inner(fr + n, K_TCP, 0x0aff0001, 0x0aff0102, 1234, 80, 0);
        union bpf_attr a; memset(&a, 0, sizeof a);
        a.test.prog_fd = pfd; a.test.data_in = (uintptr_t)fr; a.test.data_size_in = n; a.test.repeat = 200000;
        if (syscall(SYS_bpf, BPF_PROG_TEST_RUN, &a, sizeof a) == 0)
            printf("cost: eBPF steering prog %u ns/run (BPF_PROG_TEST_RUN, JIT, incl. test harness), retval=%u ref=%u\n",
                   a.test.duration, a.test.retval, ref_queue(fr + 14, n - 14, NQ));
        else perror("BPF_PROG_TEST_RUN");
        n = put_eth(fr, tapmac, gwmac);
        n += build_inner(fr + n, K_ICMPERR_UDP, 0x0aff0001, 0x0aff0102, 1234, 80, 0);
        memset(&a, 0, sizeof a);
        a.test.prog_fd = pfd; a.test.data_in = (uintptr_t)fr; a.test.data_size_in = n; a.test.repeat = 200000;
        if (syscall(SYS_bpf, BPF_PROG_TEST_RUN, &a, sizeof a) == 0)
            printf("cost: same on ICMP error (longest path) %u ns/run retval=%u ref=%u\n", a.test.duration, a.test.retval, ref_queue(fr + 14, n - 14, NQ));
        else perror("BPF_PROG_TEST_RUN 2");
    }

    /* ---- generate flows ---- */
    int per_type_ok[F_N] = { 0 }, per_type_n[F_N] = { 0 };
    int vx_by_kind_ok[K_N] = { 0 }, vx_by_kind_n[K_N] = { 0 };
    int qhist[NQ] = { 0 };
    int total_bad = 0;
    for (int i = 0; i < NFLOWS; i++) {
        struct flow *f = &fl[i];
        f->type = i % F_N;
        f->c = 0x0aff0001 + (rand() % 4);                 /* 10.255.0.1-4 (tap addrs) */
        f->r = 0x0aff0000 | ((1 + i % 250) << 8) | (1 + rand() % 250); /* unique 10.255.X.Y */
        f->r = (f->r & 0xffff00ff) | (((1 + i) & 0xff) << 8);          /* keep unique per flow */
        f->s = 20000 + rand() % 30000;
        f->d = 1 + rand() % 60000;
        f->q_tap = f->q_vx = -1;
        struct sockaddr_in ca = { .sin_family = AF_INET, .sin_port = htons(f->s), .sin_addr.s_addr = htonl(f->c) };
        struct sockaddr_in ra = { .sin_family = AF_INET, .sin_port = htons(f->d), .sin_addr.s_addr = htonl(f->r) };
        int s = -1, want = 1;
        /* (a) container -> TAP */
        switch (f->type) {
        case F_TCP:
            s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
            if (bind(s, (void *)&ca, sizeof ca) < 0) die("bind tcp");
            connect(s, (void *)&ra, sizeof ra);
            break;
        case F_UDP:
        case F_FRAG: {
            s = socket(AF_INET, SOCK_DGRAM, 0);
            int pm = IP_PMTUDISC_DONT;
            setsockopt(s, IPPROTO_IP, IP_MTU_DISCOVER, &pm, sizeof pm);
            if (bind(s, (void *)&ca, sizeof ca) < 0) die("bind udp");
            static char big[3000];
            int len = f->type == F_FRAG ? 3000 : 32;
            want = f->type == F_FRAG ? 3 : 1;
            if (sendto(s, big, len, 0, (void *)&ra, sizeof ra) != len) die("sendto udp");
            break;
        }
        case F_ECHO: {
            s = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
            if (bind(s, (void *)&ca, sizeof ca) < 0) die("bind icmp");
            uint8_t e[16] = { 8, 0, 0, 0, 0x12, 0x34, 0, 1 };
            uint16_t c = csum(e, 16); e[2] = c >> 8; e[3] = c;
            if (sendto(s, e, 16, 0, (void *)&ra, sizeof ra) != 16) die("sendto echo");
            break;
        }
        case F_ERR: {
            /* remote R:d sends UDP to container C:s (closed) -> container kernel emits
               ICMP port unreachable C->R quoting R:d->C:s */
            uint8_t fr[128]; int n = put_eth(fr, tapmac, gwmac);
            n += build_inner(fr + n, K_UDP, f->r, f->c, f->d, f->s, 0);
            if (write(tapfd[0], fr, n) != n) die("write tap");
            break;
        }
        }
        read_tap(f, want, 300);
        if (s >= 0) close(s);
        /* (b) reverse direction from the remote, VXLAN-encapsulated */
        int kinds[4], nk = 0;
        switch (f->type) {
        case F_TCP: kinds[nk++] = K_TCP; kinds[nk++] = K_TTLEXC_TCP; break;
        case F_UDP: kinds[nk++] = K_UDP; kinds[nk++] = K_ICMPERR_UDP; break;
        case F_ECHO: kinds[nk++] = K_ECHO; break;
        case F_FRAG: kinds[nk++] = K_FRAG1; kinds[nk++] = K_FRAG2; break;
        case F_ERR: kinds[nk++] = K_UDP; kinds[nk++] = K_ICMPERR_UDP; kinds[nk++] = K_TTLEXC_TCP; break;
        }
        for (int k = 0; k < nk; k++) {
            uint8_t in[256];
            /* reverse flow: R:d -> C:s.  For the ICMP-error kinds, build_inner(src=R,dst=C)
               makes an error R->C (or router->C) quoting C:s->R:d, i.e. the container's packet */
            int kk = kinds[k];
            int n;
            if (f->type == F_ERR && kk == K_UDP) n = build_inner(in, K_UDP, f->r, f->c, f->d, f->s, 0);
            else n = build_inner(in, kk, f->r, f->c, f->d, f->s, 0x0afffe01 + i);
            int idx = send_vx(in, n, i + k);
            unsigned rq = ref_queue(in, n, NQ);
            vx_by_kind_n[kk]++;
            if (idx < 0) { f->bad |= 8; continue; }
            if ((unsigned)idx != rq) { mism_prog++; f->bad |= 4; }
            if (f->q_vx < 0) f->q_vx = idx; else if (f->q_vx != idx) f->bad |= 16;
            if (idx == f->q_tap) vx_by_kind_ok[kk]++;
            f->vx_frames++;
        }
        if (f->tap_frames < want) f->bad |= 32;
        if (f->q_tap != f->q_vx) f->bad |= 64;
        per_type_n[f->type]++;
        if (!f->bad) per_type_ok[f->type]++; else total_bad++;
        if (f->q_tap >= 0) qhist[f->q_tap]++;
        if (f->bad || getenv("VERBOSE"))
            printf("flow %3d %-15s C=%08x:%u R=%08x:%u tapq=%d (%d frames) vxsock=%d (%d dgrams) bad=0x%x\n",
                   i, fname[f->type], f->c, f->s, f->r, f->d, f->q_tap, f->tap_frames, f->q_vx, f->vx_frames, f->bad);
    }
    printf("\n== symmetric steering: %d flows, %d bad, program-vs-reference mismatches %d ==\n", NFLOWS, total_bad, mism_prog);
    for (int t = 0; t < F_N; t++) printf("  %-15s %d/%d flows: all TAP frames and all reverse VXLAN datagrams on the same worker\n", fname[t], per_type_ok[t], per_type_n[t]);
    printf("  reverse-direction VXLAN datagrams by inner kind (landed on flow's TAP queue / sent):\n");
    for (int k = 0; k < K_N; k++) if (vx_by_kind_n[k]) printf("    %-20s %d/%d\n", kname[k], vx_by_kind_ok[k], vx_by_kind_n[k]);
    printf("  TAP queue distribution:"); for (int q = 0; q < NQ; q++) printf(" q%d=%d", q, qhist[q]); printf("\n");

    /* ---- index stability: detach + reattach TAP queue 0 ---- */
    printf("\n== TAP: IFF_DETACH_QUEUE fd0 then IFF_ATTACH_QUEUE fd0 ==\n");
    if (set_queue(tapfd[0], 0) < 0) die("detach");
    if (set_queue(tapfd[0], 1) < 0) die("attach");
    {
        int land[NQ][NQ] = { { 0 } }; /* [prog result][fd] */
        for (int i = 0; i < 40; i++) {
            struct flow f = { .c = 0x0aff0001, .r = 0x0aff0000 | (200 << 8) | (i + 1), .s = 30000 + i, .d = 53, .q_tap = -1 };
            int s = socket(AF_INET, SOCK_DGRAM, 0);
            struct sockaddr_in ca = { .sin_family = AF_INET, .sin_port = htons(f.s), .sin_addr.s_addr = htonl(f.c) };
            struct sockaddr_in ra = { .sin_family = AF_INET, .sin_port = htons(f.d), .sin_addr.s_addr = htonl(f.r) };
            bind(s, (void *)&ca, sizeof ca);
            sendto(s, "x", 1, 0, (void *)&ra, sizeof ra);
            close(s);
            int before = mism_prog;
            read_tap(&f, 1, 200);
            mism_prog = before;
            uint8_t ip[64]; int n = build_inner(ip, K_UDP, f.c, f.r, f.s, f.d, 0);
            if (f.q_tap >= 0) land[ref_queue(ip, n, NQ)][f.q_tap]++;
        }
        for (int r = 0; r < NQ; r++) for (int q = 0; q < NQ; q++)
            printf("  prog result %d -> read on original fd%d: %d frames\n", r, q, land[r][q]);
    }

    /* ---- reuseport: close socket 0, bind a new one ---- */
    printf("\n== reuseport: close socket index 0 (id %d), then bind a new socket (id %d) ==\n", usock_id[0], next_id);
    enter_ns("steer-a");
    close(usock[0]);
    usock[0] = usock[1]; usock_id[0] = usock_id[1]; nusock = 1;   /* kernel moved last into hole */
    {
        int land[NQ][8] = { { 0 } };
        for (int i = 0; i < 20; i++) {
            uint8_t in[128]; int n = build_inner(in, K_UDP, 0x0aff0000 | (201 << 8) | (i + 1), 0x0aff0001, 53, 30000 + i, 0);
            int idx = send_vx(in, n, i);
            if (idx >= 0) land[ref_queue(in, n, NQ)][usock_id[idx]]++;
        }
        printf("  with 1 socket (prog result >= num_socks falls back to kernel hash):\n");
        for (int r = 0; r < NQ; r++) for (int id = 0; id < next_id; id++) if (land[r][id]) printf("    prog result %d -> socket id %d: %d\n", r, id, land[r][id]);
    }
    usock[1] = bind_vx(); usock_id[1] = next_id++; nusock = 2;
    {
        int land[NQ][8] = { { 0 } };
        for (int i = 0; i < 20; i++) {
            uint8_t in[128]; int n = build_inner(in, K_UDP, 0x0aff0000 | (202 << 8) | (i + 1), 0x0aff0001, 53, 30000 + i, 0);
            int idx = send_vx(in, n, i);
            if (idx >= 0) land[ref_queue(in, n, NQ)][usock_id[idx]]++;
        }
        printf("  after re-bind (program still attached to the group):\n");
        for (int r = 0; r < NQ; r++) for (int id = 0; id < next_id; id++) if (land[r][id]) printf("    prog result %d -> socket id %d: %d\n", r, id, land[r][id]);
    }
    printf("\nRESULT: %s\n", total_bad == 0 && mism_prog == 0 ? "PASS (queue(flow) == socket(reverse flow) for every flow)" : "FAIL");
    return total_bad == 0 && mism_prog == 0 ? 0 : 1;
}
