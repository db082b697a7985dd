"""NannyML (a test dependency, pinned) as the anchor of the CBPE and multivariate parity tests.

Imported through here so its usage analytics are off before it loads: the tests make no network calls.
"""

import os
import warnings

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import nannyml  # noqa: E402

CHUNK_SIZE = 5000
CAR_LOAN_FEATURES = ["car_value", "salary_range", "debt_to_income_ratio", "loan_length", "repaid_loan_on_prev_car",
                     "size_of_downpayment", "driver_tenure"]
WFH_FEATURES = ["distance_from_office", "salary_range", "gas_price_per_litre", "public_transportation_cost",
                "wfh_prev_workday", "workday", "tenure"]

# name -> (loader, label column, feature columns); all bundled with the package, nothing downloaded
DATASETS = {
    "car_loan": (nannyml.load_synthetic_car_loan_dataset, "repaid", CAR_LOAN_FEATURES),
    "work_from_home": (nannyml.load_synthetic_binary_classification_dataset, "work_home_actual", WFH_FEATURES),
    "car_loan_quality": (nannyml.load_synthetic_car_loan_data_quality_dataset, "repaid", CAR_LOAN_FEATURES),
}


def chunks(results) -> list[tuple[int, int]]:
    """(start, end) row ranges of NannyML's analysis chunks, end exclusive."""
    return [(int(s), int(e) + 1) for s, e in zip(results[("chunk", "start_index")], results[("chunk", "end_index")])]
