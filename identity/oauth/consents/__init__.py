"""Connected apps: the consents users gave, and the page to withdraw them."""
