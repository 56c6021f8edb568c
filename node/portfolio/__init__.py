"""The bank's portfolio: booked lines, re-scoring through the batch path, early warning, lines."""
