"""Fraud scoring: the seed's rules plus a small logistic-regression model, into approve/review/decline."""
