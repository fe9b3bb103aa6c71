from django.urls import path, re_path

from compliance.api import views

urlpatterns = [
    path("consent-events", views.ConsentEventCreateView.as_view(), name="consent-event-create"),
    path("consent-events/batch", views.ConsentEventBatchView.as_view(), name="consent-event-batch"),
    path("contacts", views.ContactListView.as_view(), name="contact-list"),
    path("contacts/<int:contact_id>/consents", views.ContactConsentsView.as_view(), name="contact-consents"),
    path("contacts/<int:contact_id>/links", views.ContactLinksView.as_view(), name="contact-links"),
    path("contacts/<int:contact_id>/erasure", views.ContactErasureView.as_view(), name="contact-erasure"),
    # Last: every other path under the API answers 404 in the API's error shape, not HTML.
    # [\s\S], not ".": a path with an encoded newline is ours to answer too, in JSON.
    re_path(r"^[\s\S]*$", views.NotFoundView.as_view(), name="not-found"),
]
