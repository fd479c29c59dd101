"""The pure per-user domain: state, triggers, timers, policy, experiments, contact rules, rounds and
prediction. Never imports Faust or aiokafka."""
