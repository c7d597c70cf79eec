"""The model catalog (contract 1.1, "Models"): each model's limits and prices, seeded from a
dated, cited source and written by admins."""
