// Inner-flow steering for several workers per cell: two small kernel programs
// that compute the same symmetric hash of a container's IPv4 flow, so both
// directions of a flow (and the ICMP errors about it) reach the same worker.
//
//   - steerTap(fd, n): an eBPF socket filter (BPF_PROG_LOAD) attached to a
//     multi-queue TAP with TUNSETSTEERINGEBPF. The kernel runs it when the
//     container sends a frame (tun_select_queue -> tun_ebpf_select_queue; the
//     skb starts at the Ethernet header) and uses its result, cut to 16 bits,
//     modulo the number of attached queues. The program belongs to the device:
//     one call covers every queue, and the prog fd is closed here at once.
//   - ReuseportSteeringProgram(n): the classic BPF program UdpReceiver.steer()
//     attaches with SO_ATTACH_REUSEPORT_CBPF to the UDP/4789 SO_REUSEPORT
//     group (udp.cc). The kernel runs it on the UDP payload (the VXLAN header
//     at offset 0, the inner IPv4 header at 8 + 14 = 22) and picks the socket
//     at that index; an index >= the group's size would make the kernel fall
//     back to hashing the outer header, so the program returns < n itself.
//
// The hash (src/dataplane/steer.ts is the TypeScript reference, and the tests
// compare both programs against it), with 32-bit values as LD_ABS loads them
// (big-endian):
//     h = saddr ^ daddr
//     if the packet is not a fragment ((frag_off & 0x3fff) == 0):
//         TCP: h ^= sport ^ dport
//         ICMP type 3, 11 or 12 (errors): h = the quoted header's
//             saddr ^ daddr, and ^= its sport ^ dport when it is an
//             unfragmented TCP header
//     worker = ((h * 0x9E3779B1) mod 2^32 >> 16) % n; not IPv4: 0
// Only TCP uses ports: fragments carry none and are steered by addresses, so
// hashing UDP by ports would split a UDP flow with big (fragmented) datagrams
// over two workers. A load past the end of the packet ends either program with
// 0 (worker 0). Both programs are built per call into local buffers: the addon
// may be loaded in several worker_threads of one process.
//
// Loading the eBPF program needs CAP_BPF or CAP_SYS_ADMIN when
// kernel.unprivileged_bpf_disabled is set; attaching the classic one needs
// nothing. scripts/steer-experiment/ measured all of this on Linux 6.18.
#include "steer.h"

#include <linux/bpf.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>

namespace silkworm {

namespace {

constexpr uint32_t kGolden = 0x9E3779B1u;
constexpr int32_t kEth = 14;             // Ethernet header: the TAP program's IPv4 offset
constexpr uint32_t kVxIp = 8 + 14;       // VXLAN + inner Ethernet: the reuseport program's IPv4 offset

// ---------------------------------------------------------------------------
// eBPF (TAP). Registers: r6 = skb (LD_ABS/LD_IND need it there), r7 = h,
// r8 = offset of the header being read, r0/r9 scratch.

class EbpfBuilder {
 public:
  enum Label { kRet0, kFold, kPorts, kErr, kCount };

  void Emit(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
    struct bpf_insn i;
    memset(&i, 0, sizeof i);
    i.code = code;
    i.dst_reg = dst & 0xf;
    i.src_reg = src & 0xf;
    i.off = off;
    i.imm = imm;
    insns_.push_back(i);
  }
  void LdAbs(uint8_t size, int32_t off) { Emit(BPF_LD | BPF_ABS | size, 0, 0, 0, off); }
  void LdInd(uint8_t size, uint8_t reg, int32_t off) { Emit(BPF_LD | BPF_IND | size, 0, reg, 0, off); }
  void Alu32K(uint8_t op, uint8_t dst, int32_t k) { Emit(BPF_ALU | op | BPF_K, dst, 0, 0, k); }
  void Alu32X(uint8_t op, uint8_t dst, uint8_t src) { Emit(BPF_ALU | op | BPF_X, dst, src, 0, 0); }
  void Alu64K(uint8_t op, uint8_t dst, int32_t k) { Emit(BPF_ALU64 | op | BPF_K, dst, 0, 0, k); }
  void Alu64X(uint8_t op, uint8_t dst, uint8_t src) { Emit(BPF_ALU64 | op | BPF_X, dst, src, 0, 0); }
  // if (dst <op> k) goto label
  void JumpK(uint8_t op, uint8_t dst, int32_t k, Label l) {
    fix_.push_back({insns_.size(), l});
    Emit(BPF_JMP | op | BPF_K, dst, 0, 0, k);
  }
  void Exit() { Emit(BPF_JMP | BPF_EXIT, 0, 0, 0, 0); }
  void Mark(Label l) { at_[l] = insns_.size(); }

  std::vector<struct bpf_insn> Finish() {
    for (const Fix& f : fix_) insns_[f.pc].off = static_cast<int16_t>(at_[f.label] - f.pc - 1);
    return insns_;
  }

 private:
  struct Fix {
    size_t pc;
    Label label;
  };
  std::vector<struct bpf_insn> insns_;
  std::vector<Fix> fix_;
  size_t at_[kCount] = {};
};

std::vector<struct bpf_insn> TapSteeringProgram(uint32_t n) {
  using B = EbpfBuilder;
  B b;
  b.Alu64X(BPF_MOV, 6, 1);                  // r6 = skb
  b.LdAbs(BPF_H, 12);                       // ethertype
  b.JumpK(BPF_JNE, 0, 0x0800, B::kRet0);    // not IPv4: worker 0
  b.LdAbs(BPF_B, kEth);                     // version/IHL
  b.Alu32K(BPF_AND, 0, 0xf);
  b.Alu32K(BPF_LSH, 0, 2);
  b.Alu64X(BPF_MOV, 8, 0);
  b.Alu64K(BPF_ADD, 8, kEth);               // r8 = L4 offset
  b.LdAbs(BPF_W, kEth + 12);                // saddr
  b.Alu32X(BPF_MOV, 7, 0);
  b.LdAbs(BPF_W, kEth + 16);                // daddr
  b.Alu32X(BPF_XOR, 7, 0);                  // h = saddr ^ daddr
  b.LdAbs(BPF_H, kEth + 6);                 // flags / fragment offset
  b.Alu32K(BPF_AND, 0, 0x3fff);
  b.JumpK(BPF_JNE, 0, 0, B::kFold);         // a fragment: addresses only
  b.LdAbs(BPF_B, kEth + 9);                 // protocol
  b.JumpK(BPF_JEQ, 0, 6, B::kPorts);        // TCP
  b.JumpK(BPF_JNE, 0, 1, B::kFold);         // anything but ICMP: addresses only
  b.LdInd(BPF_B, 8, 0);                     // ICMP type
  b.JumpK(BPF_JEQ, 0, 3, B::kErr);
  b.JumpK(BPF_JEQ, 0, 11, B::kErr);
  b.JumpK(BPF_JNE, 0, 12, B::kFold);
  b.Mark(B::kErr);
  b.Alu64K(BPF_ADD, 8, 8);                  // r8 = the quoted IPv4 header
  b.LdInd(BPF_W, 8, 12);
  b.Alu32X(BPF_MOV, 7, 0);
  b.LdInd(BPF_W, 8, 16);
  b.Alu32X(BPF_XOR, 7, 0);                  // h = quoted saddr ^ daddr
  b.LdInd(BPF_H, 8, 6);
  b.Alu32K(BPF_AND, 0, 0x3fff);
  b.JumpK(BPF_JNE, 0, 0, B::kFold);
  b.LdInd(BPF_B, 8, 9);
  b.JumpK(BPF_JNE, 0, 6, B::kFold);         // quoted TCP only
  b.LdInd(BPF_B, 8, 0);
  b.Alu32K(BPF_AND, 0, 0xf);
  b.Alu32K(BPF_LSH, 0, 2);
  b.Alu64X(BPF_ADD, 8, 0);                  // r8 = the quoted TCP header
  b.Mark(B::kPorts);
  b.LdInd(BPF_W, 8, 0);                     // sport << 16 | dport
  b.Alu32X(BPF_MOV, 9, 0);
  b.Alu32K(BPF_RSH, 9, 16);
  b.Alu32K(BPF_AND, 0, 0xffff);
  b.Alu32X(BPF_XOR, 0, 9);                  // sport ^ dport (symmetric)
  b.Alu32X(BPF_XOR, 7, 0);
  b.Mark(B::kFold);
  b.Alu32K(BPF_MUL, 7, static_cast<int32_t>(kGolden));
  b.Alu32K(BPF_RSH, 7, 16);
  b.Alu32X(BPF_MOV, 0, 7);
  b.Alu32K(BPF_MOD, 0, static_cast<int32_t>(n));
  b.Exit();
  b.Mark(B::kRet0);
  b.Alu64K(BPF_MOV, 0, 0);
  b.Exit();
  return b.Finish();
}

// ---------------------------------------------------------------------------
// Classic BPF (reuseport group). A = accumulator, X = index register,
// M[0] = h, M[1], M[2] scratch, M[3] = offset of the quoted IPv4 header.

class CbpfBuilder {
 public:
  enum Label { kNone, kRet0, kFold, kPorts, kIcmp, kErr, kQuotedPorts, kReadPorts, kCount };

  void Op(uint16_t code, uint32_t k) { prog_.push_back(BPF_STMT(code, k)); }
  // if (A <op> k) goto jt else goto jf (kNone: the next instruction)
  void Jump(uint16_t code, uint32_t k, Label jt, Label jf) {
    fix_.push_back({prog_.size(), jt, jf, false});
    prog_.push_back(BPF_JUMP(code, k, 0, 0));
  }
  void Always(Label l) {
    fix_.push_back({prog_.size(), l, kNone, true});
    prog_.push_back(BPF_STMT(BPF_JMP | BPF_JA, 0));
  }
  void Mark(Label l) { at_[l] = prog_.size(); }

  std::vector<struct sock_filter> Finish() {
    for (const Fix& f : fix_) {
      if (f.always) {
        prog_[f.pc].k = static_cast<uint32_t>(at_[f.jt] - f.pc - 1);
      } else {
        prog_[f.pc].jt = f.jt == kNone ? 0 : static_cast<uint8_t>(at_[f.jt] - f.pc - 1);
        prog_[f.pc].jf = f.jf == kNone ? 0 : static_cast<uint8_t>(at_[f.jf] - f.pc - 1);
      }
    }
    return prog_;
  }

 private:
  struct Fix {
    size_t pc;
    Label jt, jf;
    bool always;
  };
  std::vector<struct sock_filter> prog_;
  std::vector<Fix> fix_;
  size_t at_[kCount] = {};
};

}  // namespace

std::vector<struct sock_filter> ReuseportSteeringProgram(uint32_t n) {
  using B = CbpfBuilder;
  const uint32_t ip = kVxIp;
  B b;
  b.Op(BPF_LD | BPF_H | BPF_ABS, 8 + 12);                  // inner ethertype
  b.Jump(BPF_JMP | BPF_JEQ | BPF_K, 0x0800, B::kNone, B::kRet0);
  b.Op(BPF_LD | BPF_W | BPF_ABS, ip + 12);                 // saddr
  b.Op(BPF_MISC | BPF_TAX, 0);
  b.Op(BPF_LD | BPF_W | BPF_ABS, ip + 16);                 // daddr
  b.Op(BPF_ALU | BPF_XOR | BPF_X, 0);
  b.Op(BPF_ST, 0);                                         // M0 = h = saddr ^ daddr
  b.Op(BPF_LD | BPF_H | BPF_ABS, ip + 6);
  b.Jump(BPF_JMP | BPF_JSET | BPF_K, 0x3fff, B::kFold, B::kNone);  // a fragment
  b.Op(BPF_LD | BPF_B | BPF_ABS, ip + 9);                  // protocol
  b.Jump(BPF_JMP | BPF_JEQ | BPF_K, 6, B::kPorts, B::kNone);
  b.Jump(BPF_JMP | BPF_JEQ | BPF_K, 1, B::kIcmp, B::kFold);
  b.Mark(B::kPorts);
  b.Op(BPF_LDX | BPF_B | BPF_MSH, ip);                     // X = IHL * 4
  b.Op(BPF_MISC | BPF_TXA, 0);
  b.Op(BPF_ALU | BPF_ADD | BPF_K, ip);
  b.Op(BPF_MISC | BPF_TAX, 0);                             // X = TCP header offset
  b.Always(B::kReadPorts);
  b.Mark(B::kIcmp);
  b.Op(BPF_LDX | BPF_B | BPF_MSH, ip);
  b.Op(BPF_LD | BPF_B | BPF_IND, ip);                      // ICMP type
  b.Jump(BPF_JMP | BPF_JEQ | BPF_K, 3, B::kErr, B::kNone);
  b.Jump(BPF_JMP | BPF_JEQ | BPF_K, 11, B::kErr, B::kNone);
  b.Jump(BPF_JMP | BPF_JEQ | BPF_K, 12, B::kErr, B::kFold);
  b.Mark(B::kErr);
  b.Op(BPF_MISC | BPF_TXA, 0);
  b.Op(BPF_ALU | BPF_ADD | BPF_K, ip + 8);
  b.Op(BPF_ST, 3);                                         // M3 = quoted IPv4 header offset
  b.Op(BPF_MISC | BPF_TAX, 0);
  b.Op(BPF_LD | BPF_W | BPF_IND, 12);
  b.Op(BPF_ST, 1);
  b.Op(BPF_LD | BPF_W | BPF_IND, 16);
  b.Op(BPF_LDX | BPF_MEM, 1);
  b.Op(BPF_ALU | BPF_XOR | BPF_X, 0);
  b.Op(BPF_ST, 0);                                         // M0 = h = quoted saddr ^ daddr
  b.Op(BPF_LDX | BPF_MEM, 3);
  b.Op(BPF_LD | BPF_H | BPF_IND, 6);
  b.Jump(BPF_JMP | BPF_JSET | BPF_K, 0x3fff, B::kFold, B::kNone);
  b.Op(BPF_LD | BPF_B | BPF_IND, 9);
  b.Jump(BPF_JMP | BPF_JEQ | BPF_K, 6, B::kNone, B::kFold);  // quoted TCP only
  b.Mark(B::kQuotedPorts);
  b.Op(BPF_LD | BPF_B | BPF_IND, 0);
  b.Op(BPF_ALU | BPF_AND | BPF_K, 0xf);
  b.Op(BPF_ALU | BPF_LSH | BPF_K, 2);
  b.Op(BPF_ALU | BPF_ADD | BPF_X, 0);
  b.Op(BPF_MISC | BPF_TAX, 0);                             // X = quoted TCP header offset
  b.Mark(B::kReadPorts);
  b.Op(BPF_LD | BPF_W | BPF_IND, 0);                       // sport << 16 | dport
  b.Op(BPF_ST, 2);
  b.Op(BPF_ALU | BPF_RSH | BPF_K, 16);
  b.Op(BPF_MISC | BPF_TAX, 0);
  b.Op(BPF_LD | BPF_MEM, 2);
  b.Op(BPF_ALU | BPF_AND | BPF_K, 0xffff);
  b.Op(BPF_ALU | BPF_XOR | BPF_X, 0);                      // sport ^ dport (symmetric)
  b.Op(BPF_LDX | BPF_MEM, 0);
  b.Op(BPF_ALU | BPF_XOR | BPF_X, 0);
  b.Op(BPF_ST, 0);
  b.Mark(B::kFold);
  b.Op(BPF_LD | BPF_MEM, 0);
  b.Op(BPF_ALU | BPF_MUL | BPF_K, kGolden);
  b.Op(BPF_ALU | BPF_RSH | BPF_K, 16);
  b.Op(BPF_ALU | BPF_MOD | BPF_K, n);
  b.Op(BPF_RET | BPF_A, 0);
  b.Mark(B::kRet0);
  b.Op(BPF_RET | BPF_K, 0);
  return b.Finish();
}

bool GetSteerWorkers(Napi::Env env, const Napi::Value& v, const char* what, uint32_t* n) {
  if (!GetIndex(env, v, "n", n)) return false;
  if (*n < kSteerMinWorkers || *n > kSteerMaxWorkers) {
    Napi::RangeError::New(env, std::string(what) + ": n must be from " + std::to_string(kSteerMinWorkers) + " to " +
                                   std::to_string(kSteerMaxWorkers) + ", not " + std::to_string(*n))
        .ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

namespace {

// BPF_PROG_LOAD of the TAP program; returns the prog fd or -errno. On a
// verifier refusal, *log holds the start of the verifier's log.
int LoadTapProgram(uint32_t n, std::string* log) {
  std::vector<struct bpf_insn> insns = TapSteeringProgram(n);
  static const char kLicense[] = "GPL";
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
  a.insns = reinterpret_cast<uintptr_t>(insns.data());
  a.insn_cnt = static_cast<uint32_t>(insns.size());
  a.license = reinterpret_cast<uintptr_t>(kLicense);
  int fd = static_cast<int>(syscall(SYS_bpf, BPF_PROG_LOAD, &a, sizeof a));
  if (fd >= 0) return fd;
  int err = errno;
  if (err == EINVAL || err == EACCES) {
    // Again with the verifier's log, to say why.
    std::vector<char> buf(16384, 0);
    a.log_buf = reinterpret_cast<uintptr_t>(buf.data());
    a.log_size = static_cast<uint32_t>(buf.size());
    a.log_level = 1;
    int again = static_cast<int>(syscall(SYS_bpf, BPF_PROG_LOAD, &a, sizeof a));
    if (again >= 0) return again;
    log->assign(buf.data(), strnlen(buf.data(), buf.size()));
    if (log->size() > 600) log->resize(600);
  }
  return -err;
}

// steerTap(fd, n): load the TAP steering program for n workers and attach it
// (TUNSETSTEERINGEBPF) to the device of TAP queue fd `fd`.
Napi::Value SteerTap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  uint32_t n;
  if (!GetFd(env, info[0], &fd) || !GetSteerWorkers(env, info[1], "steerTap", &n)) return env.Undefined();
  std::string log;
  int prog = LoadTapProgram(n, &log);
  if (prog < 0) {
    int err = -prog;
    std::string what = err == EPERM ? "steerTap: loading the TAP steering program needs CAP_BPF or CAP_SYS_ADMIN"
                                    : "steerTap: BPF_PROG_LOAD";
    if (!log.empty()) what += " (verifier: " + log + ")";
    ErrnoError(env, what, err).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int r = ioctl(fd, TUNSETSTEERINGEBPF, &prog);
  int err = errno;
  // The device holds its own reference to the program.
  close(prog);
  if (r < 0) {
    ErrnoError(env, "steerTap: TUNSETSTEERINGEBPF on fd " + std::to_string(fd), err).ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

}  // namespace

void InitSteer(Napi::Env env, Napi::Object exports) {
  exports.Set("steerTap", Napi::Function::New<SteerTap>(env, "steerTap"));
}

}  // namespace silkworm
