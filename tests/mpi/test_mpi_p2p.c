#include "mpi_fixture.h"
MPI_CASE(t) {
  (void)state;
}
static const struct CMUnitTest tests[] = {MPI_TEST(t)};
MPI_TEST_MAIN(tests)
