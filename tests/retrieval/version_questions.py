"""Version questions about customer.subscription-metrics, written before the version rule was run: each
names an earlier version or a time before 2.0.0 in its own words (or asks about today's rule), and the
version the answer must come from. Not used to fit anything."""

PRODUCT = "customer.subscription-metrics"

# (question, the product version the answer must be drawn from)
VERSION_QUESTIONS: tuple[tuple[str, str], ...] = (
    ("How did we count churn back in the first version?", "1.0.0"),
    ("What was different about the churn rule before the change?", "1.0.0"),
    ("What was the churn definition before July?", "1.0.0"),
    ("In version 1, did a failed card payment count as churn straight away?", "1.0.0"),
    ("How were paused subscribers treated for churn in 2025?", "1.0.0"),
    ("Under v1, did a gift subscription that simply ran out count as churned?", "1.0.0"),
    ("How did we previously handle very long pauses when working out churn?", "1.0.0"),
    ("Which subscribers used to count as active in the churn denominator?", "1.0.0"),
    ("Before 2026-07-01, on which day of the following month were monthly churn figures final?", "1.0.0"),
    ("What April 2026 worked example did the 1.0.0 churn page give?", "1.0.0"),
    ("Back in June 2026, how was involuntary churn dated?", "1.0.0"),
    ("In version 2, when does a failed payment become churn?", "2.0.0"),
    ("How are paused subscribers treated for churn today?", "2.0.0"),
)
