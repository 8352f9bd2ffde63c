/*
 * A minimal blocking WebSocket client for unit tests that run a real server
 * on a thread: handshake, masked text frames out, server frames in. No
 * assertions inside (it runs on client threads): failures return -1.
 */
#ifndef RT_TEST_WS_CLIENT_H
#define RT_TEST_WS_CLIENT_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * Connects to 127.0.0.1:port and completes the upgrade, sending `extra`
 * (whole header lines, each ending in CRLF, or "") after the standard ones;
 * returns the socket or -1.
 */
static inline int ws_connect_with(int port, const char *extra) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) return -1;
  char req[1024];
  int n = snprintf(req, sizeof(req),
                   "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                   "%s\r\n",
                   extra);
  if (n < 0 || (size_t)n >= sizeof(req) || write(fd, req, (size_t)n) != n) return -1;
  char c;
  int state = 0; /* how much of "\r\n\r\n" has been matched */
  while (state < 4 && read(fd, &c, 1) == 1) state = (c == "\r\n\r\n"[state]) ? state + 1 : (c == '\r');
  return state == 4 ? fd : -1;
}

/* Connects to 127.0.0.1:port and completes a plain upgrade; returns the socket or -1. */
static inline int ws_connect(int port) { return ws_connect_with(port, ""); }

/* Writes one masked frame of `opcode` carrying text (< 126 bytes) into out; returns its size. */
static inline size_t ws_frame(unsigned char *out, int opcode, const char *text, size_t n) {
  out[0] = (unsigned char)(0x80 | opcode);
  out[1] = (unsigned char)(0x80 | n);
  memcpy(out + 2, "\x11\x22\x33\x44", 4);
  for (size_t i = 0; i < n; i++) out[6 + i] = (unsigned char)text[i] ^ out[2 + i % 4];
  return 6 + n;
}

/* Sends one masked text frame (< 126 bytes). Returns 0 or -1. */
static inline int ws_send(int fd, const char *text) {
  unsigned char buf[256];
  size_t n = strlen(text);
  if (n >= 126) return -1;
  size_t len = ws_frame(buf, 1, text, n);
  return write(fd, buf, len) == (ssize_t)len ? 0 : -1;
}

static inline int read_full(int fd, void *p, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, (char *)p + got, n - got);
    if (r <= 0) return -1;
    got += (size_t)r;
  }
  return 0;
}

/* Reads one server frame (7- or 16-bit length) into out as a C string; returns its opcode or -1. */
static inline int ws_recv(int fd, char *out, size_t cap) {
  unsigned char h[4];
  if (read_full(fd, h, 2) != 0) return -1;
  size_t n = h[1] & 0x7f;
  if (n == 126) {
    if (read_full(fd, h + 2, 2) != 0) return -1;
    n = (size_t)h[2] << 8 | h[3];
  }
  if (n == 127 || n >= cap || read_full(fd, out, n) != 0) return -1;
  out[n] = '\0';
  return h[0] & 0x0f;
}

#endif
