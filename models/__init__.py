"""Online models (River) for intent and churn: see issue 4. Scores are consumed by streams/."""
