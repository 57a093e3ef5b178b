// Receives VXLAN on UDP 4789 for N seconds, either with recvmmsg on a UDP
// socket or with recvmmsg on an AF_PACKET socket (PACKET_VNET_HDR +
// PACKET_AUXDATA, classic BPF "ip and udp dst port 4789"), and counts the
// datagrams and how many the kernel marked checksum-partial. Measurement only
// (scripts/partial-csum/run.sh).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <linux/virtio_net.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#define B 64
// Does the inner UDP checksum of a VXLAN payload hold only fold16(pseudo-header)
// (what the kernel leaves when it offloads the checksum)? The byte-only signal
// completePartialChecksum in src/wire/checksum.ts uses.
static int pseudoOnly(const unsigned char *v, unsigned len) {
  if (len < 8 + 14 + 20 + 8) return 0;
  const unsigned char *ip = v + 8 + 14;
  if (ip[0] != 0x45 || ip[9] != 17) return 0;
  const unsigned char *u = ip + 20;
  unsigned l4 = (u[4] << 8) | u[5];
  unsigned long s = 17 + l4;
  for (int i = 12; i < 20; i += 2) s += (ip[i] << 8) | ip[i + 1];
  while (s > 0xffff) s = (s & 0xffff) + (s >> 16);
  return ((u[6] << 8) | u[7]) == s;
}
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
  const char *mode = argv[1]; const char *dev = argv[2]; double secs = atof(argv[3]);
  int udp = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(4789) };
  bind(udp, (void *)&sa, sizeof sa);
  int rb = 4 << 20; setsockopt(udp, SOL_SOCKET, SO_RCVBUFFORCE, &rb, sizeof rb);
  int fd = udp;
  int pk = strcmp(mode, "packet") == 0;
  if (pk) {
    fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP));
    int one = 1;
    if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one)) perror("vnet");
    if (setsockopt(fd, SOL_PACKET, PACKET_AUXDATA, &one, sizeof one)) perror("aux");
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rb, sizeof rb);
    // tcpdump -dd 'udp dst port 4789' (IPv4, no fragments check needed for the measurement)
    struct sock_filter code[] = {
      {0x28,0,0,0x0000000c},{0x15,0,8,0x00000800},{0x30,0,0,0x00000017},{0x15,0,6,0x00000011},
      {0x28,0,0,0x00000014},{0x45,4,0,0x00001fff},{0xb1,0,0,0x0000000e},{0x48,0,0,0x00000010},
      {0x15,0,1,0x000012b5},{0x6,0,0,0x00040000},{0x6,0,0,0x00000000}};
    // fix jump for the frag check: jset frag -> drop
    struct sock_fprog prog = { .len = sizeof code / sizeof code[0], .filter = code };
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog)) perror("bpf");
    struct sockaddr_ll ll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP), .sll_ifindex = if_nametoindex(dev) };
    if (bind(fd, (void *)&ll, sizeof ll)) perror("bind ll");
  }
  struct timeval tv = {0, 100000}; setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  static char buf[B][2048]; static char ctl[B][256];
  struct mmsghdr m[B]; struct iovec io[B];
  double t0 = now(), first = 0, last = 0; long n = 0, pseudo = 0, partial = 0, notready = 0, bytes = 0, calls = 0, udpDrained = 0;
  while (now() - t0 < secs) {
    for (int i = 0; i < B; i++) { io[i].iov_base = buf[i]; io[i].iov_len = 2048; memset(&m[i], 0, sizeof m[i]); m[i].msg_hdr.msg_iov = &io[i]; m[i].msg_hdr.msg_iovlen = 1; m[i].msg_hdr.msg_control = ctl[i]; m[i].msg_hdr.msg_controllen = 256; }
    struct timespec to = {0, 100000000};
    int r = recvmmsg(fd, m, B, MSG_WAITFORONE, NULL); (void)to;
    if (r <= 0) continue;
    if (!first) first = now();
    calls++; last = now();
    for (int i = 0; i < r; i++) {
      n++; bytes += m[i].msg_len;
      if (!pk) pseudo += pseudoOnly((unsigned char *)buf[i], m[i].msg_len);
      else pseudo += pseudoOnly((unsigned char *)buf[i] + sizeof(struct virtio_net_hdr) + 14 + 20 + 8, m[i].msg_len - sizeof(struct virtio_net_hdr) - 42);
      if (pk) {
        struct virtio_net_hdr *h = (void *)buf[i];
        if (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) partial++;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&m[i].msg_hdr); c; c = CMSG_NXTHDR(&m[i].msg_hdr, c))
          if (c->cmsg_level == SOL_PACKET && c->cmsg_type == PACKET_AUXDATA) { struct tpacket_auxdata *a = (void *)CMSG_DATA(c); if (a->tp_status & TP_STATUS_CSUMNOTREADY) notready++; }
      }
    }
    if (pk) { // the UDP socket still gets every datagram: drain it too (cost of this option)
      { int q = recvmmsg(udp, m, B, MSG_DONTWAIT, NULL); if (q > 0) udpDrained += q; }
    }
  }
  double el = last - first; if (el <= 0) el = 1;
  printf("{\"mode\":\"%s\",\"packets\":%ld,\"pps\":%.0f,\"calls\":%ld,\"field_is_pseudo_sum\":%ld,\"needs_csum\":%ld,\"csum_not_ready\":%ld,\"udp_also_drained\":%ld}\n", mode, n, n / el, calls, pseudo, partial, notready, udpDrained);
  return 0;
}
