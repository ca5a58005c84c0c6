"""review.agreement against the worked examples published with each figure: only their inputs and
their printed results are written here."""

import pytest

from review.agreement import agreement, reading_of

# Krippendorff, "Computing Krippendorff's Alpha-Reliability" (2011), the reliability data of
# section C: 4 observers, 12 units, values 1-5, "." where an observer gave none.
KRIPPENDORFF_2011 = {
    "A": "1 2 3 3 2 1 4 1 2 . . .",
    "B": "1 2 3 3 2 2 4 1 2 5 . 3",
    "C": ". 3 3 3 2 3 4 2 2 5 1 .",
    "D": "1 2 3 3 2 4 4 1 2 5 1 .",
}

# Fleiss' kappa worked example (Wikipedia, "Fleiss' kappa"): 10 subjects, 14 raters each, the
# number of raters who put each subject in each of 5 categories. Published: P̄ = 0.378, κ = 0.210.
FLEISS_TABLE = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]

# Fleiss (1971), "Measuring nominal scale agreement among many raters", table 1: 30 patients,
# 6 psychiatrists each, diagnoses 1 depression, 2 personality disorder, 3 schizophrenia,
# 4 neurosis, 5 other (as in the R package irr's `diagnoses`). Published overall κ = 0.430.
FLEISS_1971 = """
4 4 4 4 4 4|2 2 2 5 5 5|2 3 3 3 3 5|5 5 5 5 5 5|2 2 2 4 4 4|1 1 3 3 3 3|3 3 3 3 5 5|1 1 3 3 3 4
1 1 4 4 4 4|5 5 5 5 5 5|1 4 4 4 4 4|1 2 4 4 4 4|2 2 2 3 3 3|1 4 4 4 4 4|2 2 4 4 4 5|3 3 3 3 3 5
1 1 1 4 5 5|1 1 1 1 1 2|2 2 4 4 4 4|1 3 3 5 5 5|5 5 5 5 5 5|2 4 4 4 4 4|2 2 4 5 5 5|1 1 4 4 4 4
1 4 4 4 4 5|2 2 2 2 2 4|1 1 1 1 5 5|2 2 4 4 4 4|1 3 3 3 3 3|5 5 5 5 5 5
"""

# Cohen's kappa worked example (Wikipedia, "Cohen's kappa"): two readers of 50 grant proposals;
# both yes 20, A yes B no 5, A no B yes 10, both no 15. Published: p_o = 0.7, κ = 0.4.
COHEN_TABLE = {("yes", "yes"): 20, ("yes", "no"): 5, ("no", "yes"): 10, ("no", "no"): 15}


def krippendorff_labels() -> dict:
    labels: dict = {}
    for observer, row in KRIPPENDORFF_2011.items():
        for unit, value in enumerate(row.split()):
            if value != ".":
                labels.setdefault(unit, {})[observer] = int(value)
    return labels


def labels_from_counts(table) -> dict:
    """Each subject's counts per category as that many raters' labels (Fleiss' κ, P̄ and α do
    not depend on which rater gave which label)."""
    labels = {}
    for subject, counts in enumerate(table):
        values = [category for category, n in enumerate(counts) for _ in range(n)]
        labels[subject] = {f"rater{r}": value for r, value in enumerate(values)}
    return labels


@pytest.mark.parametrize("level, published", [("nominal", 0.743), ("interval", 0.849)])
def test_krippendorff_alpha_equals_his_2011_example_with_missing_labels(level, published):
    result = agreement(krippendorff_labels(), level)
    alpha = result.figure("krippendorff_alpha")
    assert round(alpha.value, 3) == published
    # Unit 12 has one value only: it is not pairable, so 11 units count.
    assert result.items == alpha.items == 11 and result.reviewers == 4
    assert alpha.name == f"Krippendorff's α ({level})"


def test_fleiss_kappa_and_percent_agreement_equal_the_worked_example():
    result = agreement(labels_from_counts(FLEISS_TABLE), "nominal")
    assert round(result.figure("fleiss_kappa").value, 3) == 0.210
    assert round(result.figure("percent_agreement").value, 3) == 0.378
    assert result.figure("fleiss_kappa").reading == "fair"
    assert result.figure("cohens_kappa") is None and result.reviewers == 14


def test_fleiss_kappa_equals_fleiss_1971():
    patients = [row.split() for row in FLEISS_1971.replace("\n", "|").split("|") if row]
    assert len(patients) == 30
    labels = {
        p: {f"psychiatrist{r}": d for r, d in enumerate(row)} for p, row in enumerate(patients)
    }
    kappa = agreement(labels, "nominal").figure("fleiss_kappa")
    assert round(kappa.value, 3) == 0.430 and kappa.items == 30 and kappa.note == ""


def test_cohens_kappa_equals_the_worked_example():
    labels, item = {}, 0
    for (a, b), n in COHEN_TABLE.items():
        for _ in range(n):
            labels[item] = {"reader A": a, "reader B": b}
            item += 1
    result = agreement(labels, "nominal")
    assert round(result.figure("cohens_kappa").value, 3) == 0.4
    assert round(result.figure("percent_agreement").value, 3) == 0.7
    assert result.figure("cohens_kappa").reading == "fair"
    assert result.figure("fleiss_kappa") is None and result.items == 50


def test_fleiss_kappa_uses_the_items_with_the_most_common_number_of_labels():
    labels = labels_from_counts(FLEISS_TABLE)
    labels["extra"] = {"rater0": 1, "rater1": 1, "rater2": 4}  # three labels, not fourteen
    result = agreement(labels, "nominal")
    kappa = result.figure("fleiss_kappa")
    assert round(kappa.value, 3) == 0.210 and kappa.items == 10 and result.items == 11
    assert "10 items with 14 labels" in kappa.note
    assert result.figure("krippendorff_alpha").items == 11


def test_single_labels_do_not_count_and_unanimity_is_not_a_kappa():
    result = agreement({"a": {"rita": "positive"}, "b": {"rita": "negative"}}, "nominal")
    assert result.items == 0 and result.figures == []
    same = agreement({i: {"rita": "positive", "bob": "positive"} for i in range(3)}, "nominal")
    assert same.figure("percent_agreement").value == 1.0
    kappa = same.figure("cohens_kappa")
    assert kappa.value is None and "same value" in kappa.note
    assert same.figure("krippendorff_alpha").value is None


def test_numbers_get_a_weighted_cohen_and_no_fleiss():
    labels = {i: {"rita": v, "bob": v + (1 if i % 3 == 0 else 0)} for i, v in enumerate(range(9))}
    result = agreement(labels, "interval")
    assert result.figure("cohens_kappa").name == "Cohen's κ (quadratic weights)"
    assert result.figure("cohens_kappa").value > 0.9  # off by one on a 0-9 scale: close
    assert result.figure("fleiss_kappa") is None


@pytest.mark.parametrize(
    "value, word",
    [
        (-0.1, "poor"),
        (0.0, "slight"),
        (0.2, "slight"),
        (0.21, "fair"),
        (0.5, "moderate"),
        (0.8, "substantial"),
        (0.81, "almost perfect"),
        (None, "not defined"),
    ],
)
def test_readings_follow_landis_and_koch(value, word):
    assert reading_of(value) == word
