/* The stale-range sets behind range-granular transfers (a pure data structure: no backend). */
#include "fixture.h"

static void expect(const twin__ranges *set, unsigned n, const size_t *pairs) {
  assert_int_equal(set->count, n);
  for (unsigned i = 0; i < n; i++) {
    assert_int_equal(set->r[i].lo, pairs[2 * i]);
    assert_int_equal(set->r[i].hi, pairs[2 * i + 1]);
  }
}

static void test_add_merges_overlapping_and_touching(void **state) {
  (void)state;
  twin__ranges s = {0};
  twin__ranges_add(&s, 10, 20);
  twin__ranges_add(&s, 30, 40);
  twin__ranges_add(&s, 0, 5);
  expect(&s, 3, (size_t[]){0, 5, 10, 20, 30, 40});
  twin__ranges_add(&s, 20, 30); /* touches both neighbours */
  expect(&s, 2, (size_t[]){0, 5, 10, 40});
  twin__ranges_add(&s, 3, 12);
  expect(&s, 1, (size_t[]){0, 40});
  twin__ranges_add(&s, 7, 7); /* empty */
  expect(&s, 1, (size_t[]){0, 40});
}

static void test_remove_trims_and_splits(void **state) {
  (void)state;
  twin__ranges s = {0};
  twin__ranges_add(&s, 0, 100);
  twin__ranges_remove(&s, 40, 60);
  expect(&s, 2, (size_t[]){0, 40, 60, 100});
  twin__ranges_remove(&s, 30, 70);
  expect(&s, 2, (size_t[]){0, 30, 70, 100});
  twin__ranges_remove(&s, 0, 30);
  expect(&s, 1, (size_t[]){70, 100});
  twin__ranges_remove(&s, 0, 1000);
  expect(&s, 0, NULL);
}

static void test_overlap_counts_bytes_inside(void **state) {
  (void)state;
  twin__ranges s = {0};
  twin__ranges_add(&s, 0, 10);
  twin__ranges_add(&s, 20, 30);
  assert_int_equal(twin__ranges_overlap(&s, 5, 25), 10);
  assert_int_equal(twin__ranges_overlap(&s, 10, 20), 0);
  assert_int_equal(twin__ranges_overlap(&s, 0, 100), 20);
}

static void test_full_set_over_estimates_never_under(void **state) {
  (void)state;
  twin__ranges s = {0};
  /* 40 separate ranges, every 10th byte pair; the set holds at most TWIN__RANGES_CAP. */
  for (size_t i = 0; i < 40; i++)
    twin__ranges_add(&s, i * 10, i * 10 + 2);
  assert_true(s.count <= TWIN__RANGES_CAP);
  for (size_t i = 0; i < 40; i++)
    assert_int_equal(twin__ranges_overlap(&s, i * 10, i * 10 + 2), 2);
  assert_true(twin__ranges_overlap(&s, 0, 400) >= 80);
  /* A split that does not fit keeps the range whole. */
  size_t before = twin__ranges_overlap(&s, 0, 400);
  twin__ranges_remove(&s, s.r[0].lo + 1, s.r[0].lo + 2);
  assert_true(twin__ranges_overlap(&s, 0, 400) <= before);
  for (size_t i = 1; i < 40; i++)
    assert_int_equal(twin__ranges_overlap(&s, i * 10, i * 10 + 2), 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_add_merges_overlapping_and_touching),
      cmocka_unit_test(test_remove_trims_and_splits),
      cmocka_unit_test(test_overlap_counts_bytes_inside),
      cmocka_unit_test(test_full_set_over_estimates_never_under),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
