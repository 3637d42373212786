/* The dirty map behind element-granular transfers (a pure data structure: no backend). */
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

#define H TWIN__HOST
#define D TWIN__DEVICE

/* The map holds exactly these lo, hi, side triples (sorted, disjoint), in at most n segments
 * (ranges of one shape may share a strided segment). */
static void expect(const twin__dirty *d, unsigned n, const size_t *triples) {
  assert_true(d->count <= n);
  size_t total[2] = {0, 0}, want[2] = {0, 0};
  for (unsigned i = 0; i < n; i++) {
    size_t lo = triples[3 * i], hi = triples[3 * i + 1], side = triples[3 * i + 2];
    assert_int_equal(twin__dirty_bytes(d, lo, hi, (twin__side_id)side), hi - lo);
    want[side] += hi - lo;
  }
  for (unsigned i = 0; i < d->count; i++)
    total[d->s[i].newer] += twin__pattern_bytes(&d->s[i].p);
  assert_int_equal(total[0], want[0]);
  assert_int_equal(total[1], want[1]);
}

static void test_mark_merges_touching_segments_of_one_side(void **state) {
  (void)state;
  twin__dirty d = {0};
  twin__dirty_mark(&d, 10, 20, H);
  twin__dirty_mark(&d, 30, 40, H);
  twin__dirty_mark(&d, 20, 30, H);
  expect(&d, 1, (size_t[]){10, 40, H});
  twin__dirty_mark(&d, 40, 50, D); /* touching but the other side: stays separate */
  expect(&d, 2, (size_t[]){10, 40, H, 40, 50, D});
  assert_int_equal(d.count, 2);
  twin__dirty_mark(&d, 7, 7, D); /* empty */
  expect(&d, 2, (size_t[]){10, 40, H, 40, 50, D});
}

static void test_mark_overwrites_the_other_side(void **state) {
  (void)state;
  twin__dirty d = {0};
  twin__dirty_mark(&d, 0, 100, H);
  twin__dirty_mark(&d, 40, 60, D);
  expect(&d, 3, (size_t[]){0, 40, H, 40, 60, D, 60, 100, H});
  twin__dirty_mark(&d, 30, 70, H);
  expect(&d, 1, (size_t[]){0, 100, H});
}

static void test_clear_trims_and_splits(void **state) {
  (void)state;
  twin__dirty d = {0};
  twin__dirty_mark(&d, 0, 100, D);
  twin__dirty_clear(&d, 40, 60);
  expect(&d, 2, (size_t[]){0, 40, D, 60, 100, D});
  twin__dirty_clear(&d, 0, 45);
  expect(&d, 1, (size_t[]){60, 100, D});
  twin__dirty_clear(&d, 0, 1000);
  expect(&d, 0, NULL);
}

static void test_bytes_counts_one_side_inside_a_range(void **state) {
  (void)state;
  twin__dirty d = {0};
  twin__dirty_mark(&d, 0, 10, H);
  twin__dirty_mark(&d, 20, 30, D);
  assert_int_equal(twin__dirty_bytes(&d, 5, 25, H), 5);
  assert_int_equal(twin__dirty_bytes(&d, 5, 25, D), 5);
  assert_int_equal(twin__dirty_bytes(&d, 10, 20, H), 0);
}

static void test_smallest_finds_the_shortest_segment(void **state) {
  (void)state;
  twin__dirty d = {0};
  twin__dirty_mark(&d, 0, 10, H);
  twin__dirty_mark(&d, 20, 22, D);
  twin__dirty_mark(&d, 30, 35, H);
  assert_int_equal(twin__dirty_smallest(&d), 1);
}

/* ---- Strided segments ---- */

#define ROWS 4096
#define PITCH (4096 * 4)
static twin__pattern column(size_t c) {
  return (twin__pattern){c * 4, 4, {PITCH, 0}, {ROWS, 1}};
}

static void test_a_column_is_one_segment_and_its_gaps_stay_newer(void **state) {
  (void)state;
  twin__dirty d = {0};
  twin__dirty_mark(&d, 0, ROWS * PITCH, D);
  twin__pattern c = column(100);
  assert_int_equal(twin__dirty_clear_pattern(&d, &c, true, D), TWIN__DIRTY_DONE);
  /* Before the column, its gaps (one strided segment), after it: three. */
  assert_int_equal(d.count, 3);
  assert_int_equal(twin__dirty_bytes(&d, 0, ROWS * PITCH, D), (size_t)ROWS * PITCH - ROWS * 4);
  twin__pattern c2 = column(101);
  assert_int_equal(twin__dirty_clear_pattern(&d, &c2, true, D), TWIN__DIRTY_DONE);
  assert_int_equal(d.count, 3);
  assert_int_equal(twin__dirty_bytes(&d, 0, ROWS * PITCH, D), (size_t)ROWS * PITCH - ROWS * 8);
}

static void test_sibling_columns_marked_on_one_side_merge(void **state) {
  (void)state;
  twin__dirty d = {0};
  twin__pattern a = column(100), b = column(101);
  twin__dirty_mark_pattern(&d, &a, H);
  twin__dirty_mark_pattern(&d, &b, H);
  assert_int_equal(d.count, 1);
  assert_int_equal(d.s[0].p.run, 8);
  assert_int_equal(d.s[0].p.count[0], ROWS);
}

static void test_a_block_inside_a_column_run_set_is_cut_exactly(void **state) {
  (void)state;
  twin__dirty d = {0};
  /* A 64 x 64 block at row 10, column 20, newer on the device; the host reads a 16 x 8
   * block inside it (runs inside runs). */
  twin__pattern block = {10 * PITCH + 80, 256, {PITCH, 0}, {64, 1}};
  twin__pattern inner = {20 * PITCH + 100, 32, {PITCH, 0}, {16, 1}};
  twin__dirty_mark_pattern(&d, &block, D);
  assert_int_equal(twin__dirty_clear_pattern(&d, &inner, true, D), TWIN__DIRTY_DONE);
  assert_int_equal(twin__dirty_bytes(&d, 0, ROWS * PITCH, D), 64 * 256 - 16 * 32);
  twin__pattern out[8];
  assert_int_equal(twin__pattern_intersect(&d.s[0].p, &inner, out, 8), 0);
}

static void test_a_three_d_box_is_one_segment(void **state) {
  (void)state;
  twin__dirty d = {0};
  size_t plane = 64 * 64 * 4;
  twin__pattern box = {plane * 8 + 64 * 4 * 8 + 32, 64, {256, plane}, {16, 16}};
  twin__dirty_mark(&d, 0, 64 * plane, D);
  assert_int_equal(twin__dirty_clear_pattern(&d, &box, true, D), TWIN__DIRTY_DONE);
  assert_true(d.count <= 4);
  assert_int_equal(twin__dirty_bytes(&d, 0, 64 * plane, D), 64 * plane - 16 * 16 * 64);
}

/* ---- Against a byte model ---- */

#define N 1536
typedef struct model {
  signed char side[N]; /* -1 clean, else the newer side */
} model;

static void model_apply(model *m, const twin__pattern *p, int side) {
  for (size_t j = 0; j < p->count[1]; j++)
    for (size_t i = 0; i < p->count[0]; i++)
      for (size_t b = 0; b < p->run; b++)
        m->side[p->lo + j * p->stride[1] + i * p->stride[0] + b] = (signed char)side;
}

static void model_check(const twin__dirty *d, const model *m) {
  model got;
  memset(got.side, -1, N);
  for (unsigned i = 0; i < d->count; i++) {
    const twin__pattern *p = &d->s[i].p;
    assert_true(twin__pattern_end(p) <= N);
    for (size_t j = 0; j < p->count[1]; j++)
      for (size_t k = 0; k < p->count[0]; k++)
        for (size_t b = 0; b < p->run; b++) {
          size_t at = p->lo + j * p->stride[1] + k * p->stride[0] + b;
          assert_int_equal(got.side[at], -1); /* segments are disjoint */
          got.side[at] = (signed char)d->s[i].newer;
        }
  }
  for (size_t b = 0; b < N; b++)
    if (got.side[b] != m->side[b])
      fail_msg("byte %zu: map says %d, model %d", b, got.side[b], m->side[b]);
}

/* A random view-like pattern of a 3-D 8 x 12 x 16 byte array (or of its 2-D planes). */
static twin__pattern random_pattern(void) {
  size_t d0 = 16, d1 = 12 * 16;
  size_t x = (size_t)rand() % 16, w = 1 + (size_t)rand() % (16 - x);
  size_t y = (size_t)rand() % 12, h = 1 + (size_t)rand() % (12 - y);
  size_t z = (size_t)rand() % 8, t = 1 + (size_t)rand() % (8 - z);
  size_t ystep = 1 + (size_t)rand() % 2;
  h = (h + ystep - 1) / ystep;
  twin__pattern p = {z * d1 + y * d0 + x, w, {d0 * ystep, d1}, {h, t}};
  twin__pattern_normal(&p);
  return p;
}

/* What the buffer does when an operation fails: moves a segment across, so both sides agree
 * there, and forgets it. */
static void resolve(twin__dirty *d, model *m, int r) {
  unsigned i = r >= 0 ? (unsigned)r : twin__dirty_smallest(d);
  model_apply(m, &d->s[i].p, -1);
  twin__dirty_remove(d, i);
}

static void test_random_marks_and_clears_match_a_byte_model(void **state) {
  (void)state;
  srand(14);
  twin__dirty d = {0};
  model m;
  memset(m.side, -1, N);
  unsigned resolved = 0, full = 0;
  for (int step = 0; step < 3000; step++) {
    twin__pattern p = random_pattern();
    int op = rand() % 3, r;
    twin__side_id side = rand() % 2 ? H : D;
    while ((r = op == 0   ? twin__dirty_mark_pattern(&d, &p, side)
                : op == 1 ? twin__dirty_clear_pattern(&d, &p, true, side)
                          : twin__dirty_clear_pattern(&d, &p, false, side)) != TWIN__DIRTY_DONE) {
      model_check(&d, &m); /* a failed operation leaves the map as it was */
      resolve(&d, &m, r);
      resolved++;
      full += r == TWIN__DIRTY_FULL;
    }
    if (op == 0) {
      model_apply(&m, &p, (int)side);
    } else {
      for (size_t j = 0; j < p.count[1]; j++)
        for (size_t i = 0; i < p.count[0]; i++)
          for (size_t b = 0; b < p.run; b++) {
            size_t at = p.lo + j * p.stride[1] + i * p.stride[0] + b;
            if (op == 2 || m.side[at] == (signed char)side)
              m.side[at] = -1;
          }
    }
    model_check(&d, &m);
    size_t lo = (size_t)rand() % N, hi = lo + (size_t)rand() % (N - lo);
    size_t want = 0;
    for (size_t b = lo; b < hi; b++)
      want += m.side[b] == (signed char)D;
    assert_int_equal(twin__dirty_bytes(&d, lo, hi, D), want);
  }
  print_message("%u resolutions in 3000 operations (%u for room)\n", resolved, full);
}

static void test_intersections_match_a_byte_model(void **state) {
  (void)state;
  srand(41);
  for (int step = 0; step < 3000; step++) {
    twin__pattern a = random_pattern(), b = random_pattern(), out[64];
    int n = twin__pattern_intersect(&a, &b, out, 64);
    assert_true(n >= 0);
    model ma, mb, mo;
    memset(ma.side, -1, N);
    memset(mb.side, -1, N);
    memset(mo.side, -1, N);
    model_apply(&ma, &a, 1);
    model_apply(&mb, &b, 1);
    for (int i = 0; i < n; i++)
      model_apply(&mo, &out[i], 1);
    for (size_t x = 0; x < N; x++)
      assert_int_equal(mo.side[x], ma.side[x] == 1 && mb.side[x] == 1 ? 1 : -1);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mark_merges_touching_segments_of_one_side),
      cmocka_unit_test(test_mark_overwrites_the_other_side),
      cmocka_unit_test(test_clear_trims_and_splits),
      cmocka_unit_test(test_bytes_counts_one_side_inside_a_range),
      cmocka_unit_test(test_smallest_finds_the_shortest_segment),
      cmocka_unit_test(test_a_column_is_one_segment_and_its_gaps_stay_newer),
      cmocka_unit_test(test_sibling_columns_marked_on_one_side_merge),
      cmocka_unit_test(test_a_block_inside_a_column_run_set_is_cut_exactly),
      cmocka_unit_test(test_a_three_d_box_is_one_segment),
      cmocka_unit_test(test_random_marks_and_clears_match_a_byte_model),
      cmocka_unit_test(test_intersections_match_a_byte_model),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
