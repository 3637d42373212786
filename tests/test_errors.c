#include "fixture.h"
static void test_placeholder_errors(void **state) { (void)state; }
static const struct CMUnitTest tests[] = { TWIN_TEST(test_placeholder_errors) };
TWIN_TEST_MAIN(tests)
