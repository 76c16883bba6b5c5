"""skinlesion.criteria: typed dermoscopic criteria, their head targets and the 7-point readout."""
import numpy as np
import pytest

from skinlesion import criteria as crit


@pytest.mark.parametrize("name, cell, value", [
    ("asymmetry", 2, 2), ("asymmetry", "1", 1), ("asymmetry", 0.0, 0),
    ("pigment_network", "AT", "atypical"), ("pigment_network", " T ", "typical"),
    ("dots_globules", "A", "absent"), ("dots_globules", "atypical", "atypical"),
    ("streaks", "P", True), ("streaks", "A", False), ("blue_whitish_veil", "yes", True),
    ("regression_areas", 0, False), ("colours", "light-brown; Dark Brown", frozenset({"light_brown", "dark_brown"})),
    ("colours", "blue-grey|black", frozenset({"blue_gray", "black"})), ("task2_streaks", "1", True),
    ("streaks", None, None), ("asymmetry", "", None), ("colours", "nan", None),
])
def test_sheet_codes_and_words_parse_to_typed_values(name, cell, value):
    assert crit.parse_value(name, cell) == value


@pytest.mark.parametrize("name, cell", [("asymmetry", 3), ("asymmetry", "1.5"), ("pigment_network", "A"),
                                        ("streaks", "maybe"), ("colours", "purple"), ("no_such", "P")])
def test_bad_values_name_the_criterion(name, cell):
    with pytest.raises(crit.CriteriaError, match=name):
        crit.parse_value(name, cell)


def test_validate_drops_unknowns_and_rejects_wrong_types():
    assert crit.validate({"streaks": True, "asymmetry": None, "colours": {"red"}}) == \
        {"streaks": True, "colours": frozenset({"red"})}
    for bad in ({"asymmetry": True}, {"streaks": "P"}, {"pigment_network": "absent"}, {"colours": {"green"}}):
        with pytest.raises(crit.CriteriaError):
            crit.validate(bad)


def test_head_outputs_expand_colours_and_targets_mark_unknowns():
    outputs = crit.head_outputs(crit.PH2_CRITERIA)
    names = [o.name for o in outputs]
    assert names[:6] == ["asymmetry", "pigment_network", "dots_globules", "streaks", "regression_areas",
                         "blue_whitish_veil"]
    assert names[6:] == [f"colour_{c}" for c in crit.COLOURS]
    assert [o.units for o in outputs[:6]] == [3, 2, 3, 1, 1, 1]
    # PH2's IMD048: asymmetry 1, atypical network, atypical dots/globules, nothing else, light brown.
    imd048 = {"asymmetry": 1, "pigment_network": "atypical", "dots_globules": "atypical", "streaks": False,
              "regression_areas": False, "blue_whitish_veil": False, "colours": frozenset({"light_brown"})}
    np.testing.assert_array_equal(crit.targets(imd048, outputs), [1, 1, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(crit.targets({"streaks": True}, outputs), [-1, -1, -1, 1] + [-1] * 8)
    np.testing.assert_array_equal(crit.targets(None, outputs), [-1] * 12)


def test_present_probability_reads_the_abnormal_level():
    by = {o.name: o for o in crit.head_outputs(crit.PH2_CRITERIA)}
    assert crit.present_probability(by["streaks"], [0.3]) == pytest.approx(0.3)
    assert crit.present_probability(by["asymmetry"], [0.6, 0.3, 0.1]) == pytest.approx(0.4)
    assert crit.present_probability(by["dots_globules"], [0.2, 0.3, 0.5]) == pytest.approx(0.5)
    np.testing.assert_allclose(crit.present_probability(by["pigment_network"], [[0.9, 0.1], [0.2, 0.8]]), [0.1, 0.8])


def test_seven_point_from_known_criteria_and_from_probabilities():
    # IMD420 (melanoma): atypical network (2), veil (2), streaks (1), atypical dots (1), regression (1) = 7.
    imd420 = {"pigment_network": "atypical", "dots_globules": "atypical", "streaks": True,
              "regression_areas": True, "blue_whitish_veil": True}
    result = crit.seven_point(criteria=imd420)
    assert result["score"] == 7 and result["max"] == 7 and result["suspicious"] and not result["unknown"]
    # IMD160 (common nevus): typical network and dots, nothing present.
    imd160 = {"pigment_network": "typical", "dots_globules": "typical", "streaks": False,
              "regression_areas": False, "blue_whitish_veil": False}
    assert crit.seven_point(criteria=imd160)["score"] == 0
    # Expected points: 2 x 0.5 + 2 x 0.25 + 1 x 0.4 + 1 x 0.2 = 2.1 (regression unknown).
    expected = crit.seven_point(probabilities={"pigment_network": 0.5, "blue_whitish_veil": 0.25,
                                               "streaks": 0.4, "dots_globules": 0.2})
    assert expected["score"] == pytest.approx(2.1) and not expected["suspicious"]
    assert expected["unknown"] == ["regression_areas"]
    with pytest.raises(crit.CriteriaError):
        crit.seven_point()
