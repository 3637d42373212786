/* The dirty map behind range-granular transfers (a pure data structure: no backend). */
#include "fixture.h"

#define H TWIN__HOST
#define D TWIN__DEVICE

static void expect(const twin__dirty *d, unsigned n, const size_t *triples) {
  assert_int_equal(d->count, n);
  for (unsigned i = 0; i < n; i++) {
    assert_int_equal(d->s[i].lo, triples[3 * i]);
    assert_int_equal(d->s[i].hi, triples[3 * i + 1]);
    assert_int_equal(d->s[i].newer, triples[3 * i + 2]);
  }
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mark_merges_touching_segments_of_one_side),
      cmocka_unit_test(test_mark_overwrites_the_other_side),
      cmocka_unit_test(test_clear_trims_and_splits),
      cmocka_unit_test(test_bytes_counts_one_side_inside_a_range),
      cmocka_unit_test(test_smallest_finds_the_shortest_segment),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
