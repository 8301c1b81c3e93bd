"""Operations face: the /metrics endpoint and the scrape-time collectors that read the database and
the broker (issue #18). A face: it may read every app's models; nothing but the URL conf imports it."""
