from weather_pipeline.logic.cleaning import drop_outliers, load_readings
from weather_pipeline.logic.stats import daily_means


def test_daily_means_skip_missing_and_outliers():
    assert daily_means(drop_outliers(load_readings())) == {"lima": 22.0, "oslo": -3.5}
