"""Payments: charging a case once, the signed links that lead to the payment page, receipts, money shown."""
