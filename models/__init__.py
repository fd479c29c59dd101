"""Online models: per-user features, the intent and churn models (River), the feedback tagger and hot-issue
detection (docs/prediction.md, docs/processes.md). Scores are consumed by streams/domain."""
