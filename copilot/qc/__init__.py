"""Medical-record quality control: rules as data, checks per category, batch runner, reports."""
