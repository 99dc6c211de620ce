"""Recovery analytics: facts per case and per sent message (facts.py), hourly rollups kept equal to their sum
(rollups.py). The dashboard and the reports read the rollups, never the raw rows."""
