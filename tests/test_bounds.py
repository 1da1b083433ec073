"""docs/tests.md's table of bounds holds every numeric assertion of the suite, each with the fault it must catch."""

import pytest
from bounds import check, find, read_table


@pytest.mark.quick
def test_every_numeric_assertion_has_its_row_in_the_table_of_bounds():
    """A bound added, changed or removed shows here until the table says what it must catch (tests/bounds.py)."""
    found = find()
    lacking, stale = check(found, read_table())
    told = [f"{file}:{line} {function}: {expression}" for file, function, line, _, expression in lacking]
    told += [f"a row for an assertion no longer in the source: {key}" for key in stale]
    assert len(found) > 100  # the finder still finds what it was written for
    assert not told, ("docs/tests.md's table of bounds is not the suite's: run `python tests/bounds.py write`, "
                      "then write what each new row must catch:\n" + "\n".join(told))
