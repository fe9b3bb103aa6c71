from django.urls import path

from compliance.api import views

urlpatterns = [
    path("consent-events", views.ConsentEventCreateView.as_view(), name="consent-event-create"),
    path("consent-events/batch", views.ConsentEventBatchView.as_view(), name="consent-event-batch"),
    path("contacts", views.ContactListView.as_view(), name="contact-list"),
    path("contacts/<int:contact_id>/consents", views.ContactConsentsView.as_view(), name="contact-consents"),
]
