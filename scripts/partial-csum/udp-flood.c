// Sends UDP datagrams of LEN bytes to 10.99.0.2:5000 (through a VXLAN device) as fast as it can for SECS seconds.
// Usage: udp-flood SECS LEN. Measurement only (scripts/partial-csum/run.sh).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
int main(int argc, char **argv) {
  double secs = atof(argv[1]); int len = atoi(argv[2]);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in d = { .sin_family = AF_INET, .sin_port = htons(5000) };
  inet_pton(AF_INET, "10.99.0.2", &d.sin_addr);
  static char buf[2048]; struct mmsghdr m[64]; struct iovec io[64];
  for (int i = 0; i < 64; i++) { io[i].iov_base = buf; io[i].iov_len = len; memset(&m[i], 0, sizeof m[i]); m[i].msg_hdr.msg_iov = &io[i]; m[i].msg_hdr.msg_iovlen = 1; m[i].msg_hdr.msg_name = &d; m[i].msg_hdr.msg_namelen = sizeof d; }
  struct timespec t0, t; clock_gettime(CLOCK_MONOTONIC, &t0); long n = 0;
  do { int r = sendmmsg(fd, m, 64, 0); if (r > 0) n += r; clock_gettime(CLOCK_MONOTONIC, &t); } while ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 < secs);
  printf("{\"sent\":%ld}\n", n); return 0;
}
