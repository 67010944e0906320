"""The Streamlit risk panel: reads the state files only, never OpenTelemetry."""
