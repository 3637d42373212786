#include "fixture.h"
static void test_placeholder_access(void **state) { (void)state; }
static const struct CMUnitTest tests[] = { TWIN_TEST(test_placeholder_access) };
TWIN_TEST_MAIN(tests)
