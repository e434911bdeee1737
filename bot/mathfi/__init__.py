"""The MathFi side: the HTTP client (the only code that speaks to MathFi) and its token."""
