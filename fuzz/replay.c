/*
 * Replays fuzz inputs through a libFuzzer target without libFuzzer, so the
 * committed corpus (the seeds and every crash found so far) runs in each
 * ctest build: plain, ASan+UBSan and TSan, with gcc or clang.
 *
 * Usage: replay_<target> PATH...  where each PATH is a file or a directory
 * of files (not recursive). A target that aborts fails the test; finding no
 * input at all fails it too, so a moved corpus cannot pass unnoticed.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

/* Feeds one file, read into a buffer of exactly its size so ASan catches a read past the input. */
static int replay_file(const char *path) {
  FILE *f = fopen(path, "rb");
  long len = -1;
  if (f != NULL && fseek(f, 0, SEEK_END) == 0) len = ftell(f);
  uint8_t *data = len >= 0 ? malloc(len > 0 ? (size_t)len : 1) : NULL;
  int ok = data != NULL && fseek(f, 0, SEEK_SET) == 0 &&
           fread(data, 1, (size_t)len, f) == (size_t)len;
  if (f != NULL) fclose(f);
  if (!ok) {
    fprintf(stderr, "replay: cannot read %s\n", path);
    free(data);
    return -1;
  }
  LLVMFuzzerTestOneInput(data, (size_t)len);
  free(data);
  return 0;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Replays a directory's regular files in name order; returns the count or -1. */
static long replay_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL) {
    perror(dir);
    return -1;
  }
  char **names = NULL;
  size_t count = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char **grown = realloc(names, (count + 1) * sizeof(*names));
    if (grown == NULL) abort();
    names = grown;
    size_t need = strlen(dir) + strlen(e->d_name) + 2;
    names[count] = malloc(need);
    if (names[count] == NULL) abort();
    snprintf(names[count++], need, "%s/%s", dir, e->d_name);
  }
  closedir(d);
  qsort(names, count, sizeof(*names), by_name);
  long done = 0;
  for (size_t i = 0; i < count; i++) {
    struct stat st;
    if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
      if (replay_file(names[i]) != 0) done = -1;
      if (done >= 0) done++;
    }
    free(names[i]);
  }
  free(names);
  return done;
}

int main(int argc, char **argv) {
  if (LLVMFuzzerInitialize != NULL) LLVMFuzzerInitialize(&argc, &argv);
  long total = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      perror(argv[i]);
      return 1;
    }
    long n = S_ISDIR(st.st_mode) ? replay_dir(argv[i]) : (replay_file(argv[i]) == 0 ? 1 : -1);
    if (n < 0) return 1;
    total += n;
  }
  if (total == 0) {
    fprintf(stderr, "replay: no input found\n");
    return 1;
  }
  printf("replay: %ld inputs, no failure\n", total);
  return 0;
}
