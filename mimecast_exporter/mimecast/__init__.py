"""Everything that speaks Mimecast's API: authentication, requests, pagination, retries."""
